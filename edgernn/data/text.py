"""Labelled sentences -> token-id datasets, with a HuggingFace ``tokenizers`` BPE tokenizer
trained on the training split only.

The ids are front-padded (left) with ``[PAD]`` (id 0) to a fixed length, so the last step a
recurrent model reads is the sentence's last token (edgernn's models classify from the last
step's output); sentences longer than the length keep their first tokens (the tail is cut).
``[UNK]`` (id 1) stands for characters the training split never showed. The trained tokenizer
travels with the dataset as JSON (``Dataset.tokenizer_json``) so new sentences can be encoded
the same way (``encode``).
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.data.base import Dataset
from edgernn.errors import EdgeRNNError

PAD, UNK = "[PAD]", "[UNK]"
DEFAULT_VOCAB = 2000
MAX_SEQ = 256


def _tokenizers() -> Any:
    # the Rust thread pool would print a warning in every child process edgernn forks later
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover - install problem
        raise EdgeRNNError("the text datasets need the 'tokenizers' package: "
                           "pip install tokenizers (or re-run ./scripts/setup.sh)") from e
    return tokenizers


def train_tokenizer(texts: list[str], vocab_size: int = DEFAULT_VOCAB) -> Any:
    """A byte-pair-encoding tokenizer (lower-cased, accents stripped, split on whitespace and
    punctuation) with at most ``vocab_size`` ids, learned from ``texts``. Deterministic."""
    tk = _tokenizers()
    tok = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
    tok.normalizer = tk.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK],
                                     show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def _as_tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, str):
        return _tokenizers().Tokenizer.from_str(tokenizer)
    return tokenizer


def token_lengths(tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Unpadded, untruncated token counts."""
    tok = _as_tokenizer(tokenizer)
    tok.no_padding()
    tok.no_truncation()
    return np.array([len(e.ids) for e in tok.encode_batch(texts)], dtype=np.int64)


def encode(tokenizer: Any, texts: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids [N, seq_len] int64, front-padded with 0 and cut at seq_len, and each row's number of
    real tokens [N]. ``tokenizer`` is a ``tokenizers.Tokenizer`` or its JSON string."""
    tok = _as_tokenizer(tokenizer)
    pad_id = tok.token_to_id(PAD)
    if pad_id != 0:
        raise EdgeRNNError(f"tokenizer's {PAD} id is {pad_id}, expected 0")
    tok.enable_truncation(max_length=seq_len, direction="right")
    tok.enable_padding(direction="left", pad_id=0, pad_token=PAD, length=seq_len)
    enc = tok.encode_batch(list(texts))
    ids = np.array([e.ids for e in enc], dtype=np.int64).reshape(len(enc), seq_len)
    lengths = np.array([sum(e.attention_mask) for e in enc], dtype=np.int64)
    return ids, lengths


def auto_seq_len(lengths: np.ndarray, cap: int = MAX_SEQ) -> int:
    """The 95th percentile of the training sentences' token counts, rounded up to a multiple
    of 8, between 8 and ``cap``."""
    p95 = float(np.percentile(lengths, 95)) if len(lengths) else 8.0
    return int(min(cap, max(8, 8 * math.ceil(p95 / 8))))


def label_ids(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """Class ids 0..K-1 for labels (numeric order when every label is a number, else sorted
    text), and the class names in id order."""
    uniq = sorted(set(labels))
    with contextlib.suppress(ValueError):
        uniq = sorted(uniq, key=float)
    index = {v: i for i, v in enumerate(uniq)}
    return np.array([index[v] for v in labels], dtype=np.int64), uniq


def build(name: str, train_texts: list[str], y_train: np.ndarray, test_texts: list[str],
          y_test: np.ndarray, *, description: str, class_names: list[str],
          vocab_size: int = DEFAULT_VOCAB, seq_len: int | None = None, source: str = "",
          license: str = "") -> Any:
    """A classify ``Dataset`` of token ids from already-split texts; the tokenizer (and the
    automatic seq_len) come from the training texts only."""

    if vocab_size < 3:
        raise EdgeRNNError(f"vocab size {vocab_size} is too small (>= 3: {PAD}, {UNK}, a token)")
    tok = train_tokenizer(train_texts, vocab_size)
    if seq_len is None:
        seq_len = auto_seq_len(token_lengths(tok, train_texts))
    xtr, ltr = encode(tok, train_texts, seq_len)
    xte, lte = encode(tok, test_texts, seq_len)
    vocab = int(tok.get_vocab_size())
    return Dataset(
        name, "classify", xtr, y_train, xte, y_test,
        f"{description}; BPE tokenizer (HuggingFace tokenizers) trained on the training split "
        f"only, {vocab} ids; {seq_len} tokens per sentence, front-padded with id 0 (longer "
        "sentences keep their first tokens)",
        real=True, num_classes=len(class_names), vocab_size=vocab,
        lengths_train=ltr, lengths_test=lte, source=source, license=license,
        class_names=list(class_names), tokenizer_json=tok.to_str(),
    )


def from_csv(path: str | Path, text_column: str = "text", label_column: str = "label", *,
             split: float = 0.8, shuffle: bool = True, seed: int = 0,
             vocab_size: int = DEFAULT_VOCAB, seq_len: int | None = None) -> Any:
    """The user's CSV of sentences and labels as a token-id classify ``Dataset``.

    Rows with an empty text or label are dropped (and counted in the description). The rows
    are shuffled with ``seed`` before the ``split`` cut unless ``shuffle=False`` (then the file
    order decides: the first rows train). The tokenizer is trained on the training rows only.
    """
    p = Path(path)
    if not p.is_file():
        raise EdgeRNNError(f"no such CSV file: {p}")
    if not 0 < split < 1:
        raise EdgeRNNError(f"split must be between 0 and 1, got {split}")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            for c, what in ((text_column, "text"), (label_column, "label")):
                if c not in cols:
                    raise EdgeRNNError(f"{p} has no {what} column {c!r}; its columns: "
                                       f"{', '.join(map(repr, cols))[:200] or '(none)'}")
            rows = [((r.get(text_column) or "").strip(), (r.get(label_column) or "").strip())
                    for r in reader]
    except UnicodeDecodeError as e:
        raise EdgeRNNError(f"{p} is not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r}"
                           "); re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
    except csv.Error as e:
        raise EdgeRNNError(f"{p} is not a readable CSV (after line {reader.line_num}: {e}); a sentence "
                           "per row, at most 131072 characters") from None
    kept = [(t, lab) for t, lab in rows if t and lab]
    dropped = len(rows) - len(kept)
    if len(kept) < 2:
        raise EdgeRNNError(f"{p} has {len(kept)} rows with both a text and a label; need >= 2")
    y, classes = label_ids([lab for _, lab in kept])
    if len(classes) < 2:
        raise EdgeRNNError(f"{p}: every row has the label {classes[0]!r}; need >= 2 classes")
    order = np.random.default_rng(seed).permutation(len(kept)) if shuffle else np.arange(len(kept))
    cut = min(len(kept) - 1, max(1, int(round(len(kept) * split))))
    tr, te = order[:cut], order[cut:]
    texts = [t for t, _ in kept]
    how = f"shuffled (seed {seed})" if shuffle else "in file order"
    return build(
        p.stem, [texts[i] for i in tr], y[tr], [texts[i] for i in te], y[te],
        description=(f"user sentences {p} (columns {text_column!r}/{label_column!r}): "
                     f"{len(kept)} rows{f', {dropped} without text or label dropped' if dropped else ''}"
                     f", {len(classes)} classes ({', '.join(classes)}), {how}, first {cut} train"),
        class_names=classes, vocab_size=vocab_size, seq_len=seq_len, source=str(p),
        license="the user's own",
    )
