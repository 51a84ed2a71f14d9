"""Commands that make and look at models and data: datasets, train, inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape as rich_escape

from edgernn.cli.app import FiniteFloat, _load_kwargs, _progress, load_options, out
from edgernn.errors import EdgeRNNError
from edgernn.names import shown


@click.command()
@click.option("--stream", metavar="NAME", help="Write NAME's held-out data as step streams with a "
              "label per step (for step models) to --out.")
@click.option("--enhance", "enhance_n", type=click.IntRange(1), metavar="N",
              help="Write N speech-enhancement pairs (espeak-ng speech + noise: x log-power "
                   "[N, steps, bins], y ideal ratio mask, clean/noisy magnitudes for "
                   "--metric-fn snr_gain) to --out.")
@click.option("--steps", type=click.IntRange(2),
              help="Steps per stream or frames per enhancement sample (default 28 with "
                   "--stream, 200 with --enhance).")
@click.option("--bins", default=161, show_default=True, type=click.IntRange(3),
              help="With --enhance: frequency bins per frame (a 2*(bins-1)-point STFT, hop "
                   "bins-1 at 16 kHz).")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="test",
              show_default=True, help="With --enhance: kws's training or held-out speakers.")
@click.option("--seed", default=0, show_default=True, type=int, help="With --enhance.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where --stream or --enhance writes its .npz.")
def datasets(stream: str | None, enhance_n: int | None, steps: int | None, bins: int,
             split: str, seed: int, out_path: Path | None) -> None:
    """List the bundled datasets (or write one as per-step labelled streams, or speech-
    enhancement pairs)."""
    from edgernn.data.datasets import STREAMS, info, load_dataset, names

    escape = rich_escape

    if stream and enhance_n:
        raise EdgeRNNError("--stream and --enhance each write a file: give one")
    if enhance_n:
        from edgernn.data.enhance import enhancement_pairs, write_npz

        if out_path is None:
            raise EdgeRNNError("--enhance needs --out FILE.npz")
        d = enhancement_pairs(enhance_n, steps or 200, bins, split=split, seed=seed)
        write_npz(out_path, d)
        out.print(f"wrote {out_path}: x/y/clean/noisy {list(d.x.shape)}; {d.description}",
                  highlight=False)
        return
    if stream:
        from edgernn.data.evalfile import save_eval

        if stream not in STREAMS:
            raise EdgeRNNError(f"no stream form of {stream!r}; streams: {', '.join(STREAMS)}")
        if out_path is None:
            raise EdgeRNNError("--stream needs --out FILE.npz")
        x, y, what = STREAMS[stream](steps or 28)
        save_eval(out_path, x, y, "classify", description=what)
        out.print(f"wrote {out_path}: x {list(x.shape)}, y {list(y.shape)}; {what}",
                  highlight=False)
        return
    for n in names():
        meta = info(n)
        note = meta.status() if meta.status else None
        if note:  # generated at first use (or cannot be): say so, do not generate here
            out.print(f"[bold]{n}[/] ({meta.domain}, synthetic): {escape(note)}")
            continue
        try:
            ds = load_dataset(n)
        except EdgeRNNError as e:  # files not fetched: list it with the fix
            out.print(f"[bold]{n}[/] ({meta.domain}; not available: {escape(str(e))})")
            continue
        kind = "real" if ds.real else "synthetic"
        shape = f"seq {ds.seq_len}" + (", variable length, front-padded"
                                       if getattr(ds, "lengths_train", None) is not None else "")
        domain = f"{meta.domain}, " if meta.domain and meta.domain != kind else ""
        out.print(f"[bold]{n}[/] ({domain}{kind}, {ds.task}, {len(ds.x_train)}+"
                  f"{len(ds.x_test)} windows, {shape}): {escape(ds.description)}")
        if ds.source or ds.license:
            out.print(f"    source: {escape(ds.source or '?')}; license: {escape(ds.license or '?')}",
                      highlight=False)


@click.command()
@click.option("--dataset", default="weather", show_default=True, help="Bundled dataset.")
@click.option("--data", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Train on your own CSV of sentences and labels instead (a BPE tokenizer is "
                   "trained on its training rows and written beside OUT as .tokenizer.json).")
@click.option("--text-column", default="text", show_default=True, help="With --data: text column.")
@click.option("--label-column", default="label", show_default=True,
              help="With --data: label column.")
@click.option("--vocab-size", default=2000, show_default=True, type=click.IntRange(8),
              help="With --data: tokenizer vocabulary size.")
@click.option("--seq-len", type=click.IntRange(1),
              help="With --data: tokens per sentence (default: the 95th percentile, up to 256).")
@click.option("--layers", default="lstm:64", show_default=True,
              help="Recurrent stack, e.g. gru:128,lstm:128 or bilstm:64x2; an encoder/decoder "
             "forecaster gru:64/lstm:64; an ensemble lstm:64+gru:64 (members trained "
             "separately, predictions averaged).")
@click.option("--epochs", default=15, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=3e-3, show_default=True, type=FiniteFloat())
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-train", type=click.IntRange(1), help="Use only the first N training windows.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.pt).")
@click.option("--eval-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Held-out evaluation file (default: OUT with .eval.npz).")
def train(dataset: str, csv_path: Path | None, text_column: str, label_column: str,
          vocab_size: int, seq_len: int | None, layers: str, epochs: int, batch_size: int,
          lr: float, seed: int, max_train: int | None, out_path: Path,
          eval_out: Path | None) -> None:
    """Train a reference classifier or forecaster on a bundled dataset or your CSV of text."""
    from edgernn.api import train_model

    source: Any = dataset
    if csv_path is not None:
        from edgernn.data.text import from_csv

        source = from_csv(csv_path, text_column, label_column, vocab_size=vocab_size,
                          seq_len=seq_len, seed=seed)
    eval_out = eval_out or out_path.with_suffix(".eval.npz")
    with _progress() as progress:
        res = train_model(source, layers, out_path, eval_out, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, max_train=max_train,
                          progress=progress)
    from edgernn.measure.rows import FEW_SAMPLES

    n = res.eval_samples
    final = (f"n={n}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.final.items())
             + (f"; only {n} held-out sample{'s' * (n != 1)}, TOO FEW to judge the model "
                f"(< {FEW_SAMPLES})" if n < FEW_SAMPLES else ""))
    per = sum(res.epoch_seconds) / len(res.epoch_seconds)
    out.print(f"wrote {out_path} ({sum(p.numel() for p in res.model.parameters())} parameters, "
              f"{per:.2f} s/epoch; held-out {final}) and {eval_out}"
              + (f"; tokenizer {res.tokenizer_path}" if res.tokenizer_path else ""))


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="Also check that this evaluation data fits the model.")
@load_options
def inspect(model: Path, data_path: Path | None, **kw: Any) -> None:
    """Load MODEL safely and show what it is: kind, input spec, recurrent layers, parameters."""
    from edgernn.data.evalfile import check_targets, load_eval
    from edgernn.data.onehot import one_hot_to_labels
    from edgernn.measure.bench import model_classes
    from edgernn.measure.inputs import fit_data, per_step
    from edgernn.model.loading import load_model, load_model_for_data

    data = load_eval(data_path) if data_path else None
    load = _load_kwargs(kw)
    note = None
    if data is not None:  # a file without an input spec takes its shape from x
        lm, _ = load_model_for_data(model, data.x, load)
        data, note = one_hot_to_labels(data, lm.spec.task or load.get("task"))
    else:
        lm = load_model(model, **load)
    out.print(f"[bold]{rich_escape(shown(str(lm.path)))}[/] ({lm.kind}, sha256 {lm.sha256[:16]}...)")
    sig = lm.sig
    for t in sig.inputs:
        out.print(shown(f"  input {t}") + (" (state)" if t.role == "state" else ""), highlight=False,
                  markup=False)
    for t in sig.outputs:
        out.print(shown(f"  output {t}") + (" (state)" if t.role == "state" else ""), highlight=False,
                  markup=False)
    for i, o in sig.state.items():
        how = "by equal shape" if sig.paired == "shape" else "as given"
        out.print(f"  state: {o} feeds {i} at the next step ({how})", highlight=False)
    task = lm.spec.task or (f"{data.task} (from the data; the file does not say)" if data
                            else "not stored in the file (bench takes it from --data, or --task)")
    out.print(f"  task: {task}" + ("; streaming step model" if sig.is_streaming else ""),
              highlight=False)
    out.print(f"  parameters: {lm.parameters_count():,}")
    for name, m in lm.module.named_modules():
        kind = getattr(m, "original_name", type(m).__name__)
        if kind in ("LSTM", "GRU", "RNN"):
            d = " bidirectional" if getattr(m, "bidirectional", False) else ""
            out.print(f"  {name or 'model'}: {kind} hidden {getattr(m, 'hidden_size', '?')} x"
                      f"{getattr(m, 'num_layers', '?')}{d}", highlight=False)
    if data is not None:
        x = fit_data(lm, data)
        task = lm.spec.task or data.task
        check_targets(data, lm.spec, task, model_classes(lm, x, task, per_step(lm, data.y, task)))
        out.print(f"  data: {data_path} fits: x {list(x.shape)} {x.dtype}, y {list(data.y.shape)} "
                  f"({data.task})", highlight=False)
        if note:
            out.print(f"  note: {note}", highlight=False)
