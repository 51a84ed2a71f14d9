"""Bundled datasets, read offline.

``weather`` and ``temps`` are real NOAA data shipped inside the ``vega_datasets`` package (an
install dependency). ``vowels`` (speech), ``motions`` (sensor), ``appliances`` (long sequences),
``demand`` (multi-seasonal electricity demand) and ``sentiment`` (text) are real data files that
``./scripts/fetch_data.sh`` takes from PyPI packages at setup time (see ``edgernn.data.sources``).
``tokens`` is synthetic; ``kws`` is synthetic speech made with espeak-ng at first use
(``edgernn.data.kws``). ``edgernn.data.text.from_csv`` turns the user's own CSV of sentences
and labels into a dataset."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgernn.data.base import INFO, Dataset, Info, info, load_dataset, names, register
from edgernn.data.sources import PACKAGES, data_file, read_hutto, read_taylor, read_ts
from edgernn.errors import EdgeRNNError

__all__ = ["INFO", "Dataset", "Info", "info", "load_dataset", "names", "register"]


def _windows(values: np.ndarray, seq: int, stride: int = 1) -> np.ndarray:
    idx = np.arange(0, len(values) - seq + 1, stride)
    return np.stack([values[i : i + seq] for i in idx])


_VEGA = ("vega_datasets 0.9 (PyPI; NOAA records)", "MIT (vega_datasets)")


@register("weather", domain="weather", source=_VEGA[0], license=_VEGA[1])
def weather(seq: int = 14) -> Dataset:
    """Seattle daily weather 2012-2015: from 14 days of precipitation, max/min temperature
    and wind, predict whether the next day is wet (precipitation > 0)."""
    from vega_datasets import local_data

    df = local_data.seattle_weather()
    cols = ["precipitation", "temp_max", "temp_min", "wind"]
    values = df[cols].to_numpy(np.float32)
    wet = (df["precipitation"].to_numpy() > 0).astype(np.int64)
    x = _windows(values[:-1], seq)
    y = wet[seq:]
    cut = int(len(x) * 0.75)
    return Dataset(
        "weather", "classify", x[:cut], y[:cut], x[cut:], y[cut:],
        "Seattle daily weather 2012-2015 (NOAA, from vega_datasets): next-day wet/dry "
        "from 14 days of precipitation, temperatures and wind",
        real=True, num_classes=2, feature_names=cols,
    )


def weather_stream(steps: int = 28) -> tuple[np.ndarray, np.ndarray, str]:
    """The held-out last quarter of the Seattle weather days as streams of ``steps`` days:
    x [N, steps, 4] (one day per step, the ``weather`` features), y [N, steps] whether the
    NEXT day is wet: a label per step, for step models fed one day at a time."""
    from vega_datasets import local_data

    df = local_data.seattle_weather()
    values = df[["precipitation", "temp_max", "temp_min", "wind"]].to_numpy(np.float32)
    wet = (df["precipitation"].to_numpy() > 0).astype(np.int64)
    # the first day after every training window of ``weather`` (14-day windows, 75% cut)
    start = int((len(values) - 14) * 0.75) + 14
    n = (len(values) - 1 - start) // steps
    x = values[start : start + n * steps].reshape(n, steps, 4)
    y = wet[start + 1 : start + 1 + n * steps].reshape(n, steps)
    return x, y, (f"Seattle daily weather (NOAA, vega_datasets), held-out last quarter: {n} "
                  f"streams of {steps} days; label per day: is the next day wet")


STREAMS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, str]]] = {
    "weather": weather_stream}


@register("temps", domain="weather", source=_VEGA[0], license=_VEGA[1])
def temps(seq: int = 48, horizon: int = 6) -> Dataset:
    """Seattle hourly temperature 2010: from 48 hours of temperature and hour-of-day,
    forecast the next 6 hours (degrees F)."""
    from vega_datasets import local_data

    df = local_data.seattle_temps()
    temp = df["temp"].to_numpy(np.float32)
    hour = df["date"].dt.hour.to_numpy()
    ang = 2 * np.pi * hour / 24
    feats = np.stack([temp, np.sin(ang), np.cos(ang)], axis=1).astype(np.float32)
    n = len(temp) - seq - horizon + 1
    starts = np.arange(n)
    cut = int(n * 0.8)
    tr, te = starts[:cut:2], starts[cut:]
    def mk(s):
        return (np.stack([feats[i : i + seq] for i in s]),
                np.stack([temp[i + seq : i + seq + horizon] for i in s]).astype(np.float32))
    xtr, ytr = mk(tr)
    xte, yte = mk(te)
    return Dataset(
        "temps", "forecast", xtr, ytr, xte, yte,
        "Seattle hourly temperature 2010 (NOAA, from vega_datasets): next 6 hours from 48 "
        "hours of temperature and hour of day",
        real=True, horizon=horizon, feature_names=["temp", "hour_sin", "hour_cos"],
    )


@register("tokens", domain="synthetic", source="generated (numpy, seed 0)", license="n/a")
def tokens(seq: int = 32, vocab: int = 64, n: int = 4000) -> Dataset:
    """Synthetic token sequences (int64 ids): label 1 when token 1 occurs more often than
    token 2. Exercises the Embedding input path; not real data."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, vocab, size=(n, seq), dtype=np.int64)
    boost = rng.integers(1, 3, size=n)
    for i in range(n):
        pos = rng.choice(seq, size=rng.integers(2, 8), replace=False)
        x[i, pos] = boost[i]
    y = ((x == 1).sum(1) > (x == 2).sum(1)).astype(np.int64)
    cut = int(n * 0.8)
    return Dataset(
        "tokens", "classify", x[:cut], y[:cut], x[cut:], y[cut:],
        "synthetic token ids: is token 1 more frequent than token 2", real=False,
        num_classes=2, vocab_size=vocab,
    )


# ---- real data fetched from PyPI packages at setup time (./scripts/fetch_data.sh) -----------

_UEA = "UEA/UCR time series classification archive file shipped in the sktime 1.2.0 wheel"


def pad_left(series: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, length, D] float32 with each [T, D] series at the END (zeros in front, so the last
    step is the series' last real step), and the true lengths [N]. Longer series keep their
    last ``length`` steps."""
    dims = series[0].shape[1]
    x = np.zeros((len(series), length, dims), dtype=np.float32)
    lengths = np.zeros(len(series), dtype=np.int64)
    for i, s in enumerate(series):
        s = s[-length:]
        x[i, length - len(s):] = s
        lengths[i] = len(s)
    return x, lengths


def _ts_pair(dataset: str, problem: str):
    tr = read_ts(data_file("sktime", f"{problem}/{problem}_TRAIN.ts", dataset))
    te = read_ts(data_file("sktime", f"{problem}/{problem}_TEST.ts", dataset))
    classes = tr.class_labels
    index = {c: i for i, c in enumerate(classes)}
    try:
        ytr = np.array([index[v] for v in tr.labels], dtype=np.int64)
        yte = np.array([index[v] for v in te.labels], dtype=np.int64)
    except KeyError as e:
        raise EdgeRNNError(f"{problem}: label {e} not declared in @classLabel") from None
    return tr, te, ytr, yte, classes


@register("vowels", domain="speech", fetched=True,
          source=f"JapaneseVowels ({_UEA}; UCI, Kudo, Toyama & Shimbo 1999)",
          license="BSD-3-Clause (sktime); data from the UCI ML repository (CC BY 4.0)")
def vowels() -> Dataset:
    """Japanese Vowels: which of 9 male speakers uttered /ae/, from 12 LPC cepstrum
    coefficients per frame; 7-29 frames, front-padded with zeros to 29 (``lengths_*``)."""
    tr, te, ytr, yte, classes = _ts_pair("vowels", "JapaneseVowels")
    seq = max(len(s) for s in tr.series + te.series)
    xtr, ltr = pad_left(tr.series, seq)
    xte, lte = pad_left(te.series, seq)
    return Dataset(
        "vowels", "classify", xtr, ytr, xte, yte,
        f"speech: Japanese Vowels, speaker identification (9 speakers) from 12 LPC cepstrum "
        f"coefficients per frame; utterances of {int(min(ltr.min(), lte.min()))}-{seq} frames, "
        f"front-padded with zeros to {seq} (true lengths kept; the last step is always a real "
        f"frame); the archive's split ({len(xtr)} train, 30 per speaker / {len(xte)} test)",
        real=True, num_classes=len(classes), lengths_train=ltr, lengths_test=lte,
        class_names=[f"speaker {c}" for c in classes],
        feature_names=[f"lpc_cepstrum_{i + 1}" for i in range(xtr.shape[2])],
    )


@register("motions", domain="sensor", fetched=True,
          source=f"BasicMotions ({_UEA}; smartwatch recordings, UEA student project)",
          license="BSD-3-Clause (sktime); data under the UEA/UCR archive's terms (cite its creators)")
def motions() -> Dataset:
    """BasicMotions: standing / running / walking / badminton from a smartwatch's 3D
    accelerometer and 3D gyroscope, 10 Hz for 10 s (100 steps)."""
    tr, te, ytr, yte, classes = _ts_pair("motions", "BasicMotions")
    xtr, xte = np.stack(tr.series), np.stack(te.series)
    return Dataset(
        "motions", "classify", xtr, ytr, xte, yte,
        f"sensor: BasicMotions, activity ({', '.join(c.lower() for c in classes)}) from a "
        f"smartwatch's 3D accelerometer + 3D gyroscope, 100 steps at 10 Hz; the archive's split "
        f"({len(xtr)} train / {len(xte)} test)",
        real=True, num_classes=len(classes), class_names=classes,
        feature_names=[f"channel_{i + 1}" for i in range(xtr.shape[2])],
    )


@register("appliances", domain="long sequences", fetched=True,
          source=f"ACSF1 ({_UEA}; ACS-F1 database, Gisler et al. 2013)",
          license="BSD-3-Clause (sktime); data under the UEA/UCR archive's terms (cite its creators)")
def appliances(downsample: int = 1) -> Dataset:
    """ACSF1: which of 10 appliance types from 1,460 steps of its power consumption
    (z-normalised per series by the archive). ``downsample`` > 1 averages that many steps."""
    tr, te, ytr, yte, classes = _ts_pair("appliances", "ACSF1")
    xtr, xte = np.stack(tr.series), np.stack(te.series)
    if downsample > 1:
        n = xtr.shape[1] // downsample * downsample
        xtr = xtr[:, :n].reshape(len(xtr), -1, downsample, xtr.shape[2]).mean(2)
        xte = xte[:, :n].reshape(len(xte), -1, downsample, xte.shape[2]).mean(2)
    how = f", averaged over {downsample} steps" if downsample > 1 else ""
    return Dataset(
        "appliances", "classify", xtr, ytr, xte, yte,
        f"long sequences: ACSF1 appliance power signatures, 10 appliance types (phone chargers, "
        f"coffee machines, computer stations, fridges/freezers, hi-fi, CFL lamps, laptops, "
        f"microwaves, printers, TVs; the archive does not map them to its labels 0-9), "
        f"{xtr.shape[1]} steps{how} (z-normalised per series by the archive); the archive's "
        f"split ({len(xtr)} train / {len(xte)} test, 10 per class each)",
        real=True, num_classes=len(classes),
        class_names=[f"appliance type {c}" for c in classes],
        feature_names=["power"],
    )


@register("demand", domain="multi-seasonal demand", fetched=True,
          source=("taylor: half-hourly electricity demand, England and Wales, 5 Jun - 27 Aug "
                  "2000 (Taylor 2003, via R's forecast package), shipped in the pmdarima 2.1.1 "
                  "wheel"),
          license=f"{PACKAGES['pmdarima'].license} (pmdarima); the R forecast copy is GPL-3")
def demand(seq: int = 336, horizon: int = 48, stride: int = 6, train_weeks: int = 9) -> Dataset:
    """Forecast the next day (48 half-hours) of demand from the past week (336 half-hours: the
    weekly cycle is visible in one window, the daily one seven times); features: demand and
    sin/cos of the time of day and of the day of week. Time-ordered: training windows' targets
    lie in the first ``train_weeks`` weeks, test targets all in the weeks after."""
    mw = read_taylor(data_file("pmdarima", "taylor.py", "demand"))
    t = np.arange(len(mw))
    day = 2 * np.pi * (t % 48) / 48
    week = 2 * np.pi * (t % 336) / 336  # the series starts on a Monday at 00:00
    feats = np.stack([mw, np.sin(day), np.cos(day), np.sin(week), np.cos(week)],
                     axis=1).astype(np.float32)
    cut = train_weeks * 336
    if not seq + horizon <= cut < len(mw) - horizon:
        raise EdgeRNNError(f"demand: seq {seq} + horizon {horizon} does not fit the split at "
                           f"week {train_weeks} of {len(mw) // 336}")
    tr = np.arange(0, cut - seq - horizon + 1, stride)
    te = np.arange(cut - seq, len(mw) - seq - horizon + 1, stride)

    def mk(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.stack([feats[i : i + seq] for i in starts]),
                np.stack([mw[i + seq : i + seq + horizon] for i in starts]).astype(np.float32))

    xtr, ytr = mk(tr)
    xte, yte = mk(te)
    weeks = len(mw) // 336
    return Dataset(
        "demand", "forecast", xtr, ytr, xte, yte,
        f"multi-seasonal demand: half-hourly electricity demand (MW), England and Wales, "
        f"{weeks} weeks of 2000 (daily + weekly seasonality); next {horizon} half-hours from "
        f"the past {seq} (one week) of demand + time of day + day of week; time-ordered split: "
        f"training targets in weeks 1-{train_weeks}, test targets in weeks "
        f"{train_weeks + 1}-{weeks}; windows every {stride} half-hours",
        real=True, horizon=horizon,
        feature_names=["demand_mw", "day_sin", "day_cos", "week_sin", "week_cos"],
    )


SENTIMENT_FILES = {"movie reviews": "movieReviewSnippets", "tweets": "tweets",
                   "product reviews": "amazonReviewSnippets"}


@register("sentiment", domain="text", fetched=True,
          source=("human-rated snippets of Hutto & Gilbert, ICWSM 2014 (VADER): "
                  "hutto_ICWSM_2014.tar.gz in the vaderSentiment 3.3.2 source distribution"),
          license=f"{PACKAGES['vaderSentiment'].license} (vaderSentiment)")
def sentiment(vocab_size: int = 2000, seq_len: int = 64, neutral: float = 0.5,
              split: float = 0.8, seed: int = 0) -> Dataset:
    """Positive / negative from the mean of ~20 human ratings in [-4, 4] of movie-review
    snippets, tweets and product-review snippets. Snippets rated within +-``neutral`` of 0
    are dropped (neutral or mixed), then repeated texts (first kept)."""
    from edgernn.data.text import build

    texts: list[str] = []
    ratings: list[float] = []
    counts = []
    for what, stem in SENTIMENT_FILES.items():
        r, t = read_hutto(data_file("vaderSentiment", f"hutto_ICWSM_2014/{stem}_GroundTruth.txt",
                                    "sentiment"))
        counts.append(f"{len(t)} {what}")
        texts += t
        ratings += r.tolist()
    seen: set[str] = set()
    keep = []
    for i, (t, r) in enumerate(zip(texts, ratings, strict=True)):
        if abs(r) >= neutral and t not in seen:
            seen.add(t)
            keep.append(i)
    n_all = len(texts)
    texts = [texts[i] for i in keep]
    y = (np.array([ratings[i] for i in keep]) > 0).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(texts))
    cut = int(len(texts) * split)
    tr, te = order[:cut], order[cut:]
    return build(
        "sentiment", [texts[i] for i in tr], y[tr], [texts[i] for i in te], y[te],
        description=(f"text: sentiment of human-rated snippets ({', '.join(counts)}); label "
                     f"positive if the mean rating > 0, snippets within +-{neutral} of 0 "
                     f"dropped as neutral, and repeated texts: {len(texts)} of {n_all} kept "
                     f"({int(y.mean() * 100)}% positive), shuffled (seed {seed}) "
                     f"{int(split * 100)}/{100 - int(split * 100)}"),
        class_names=["negative", "positive"], vocab_size=vocab_size, seq_len=seq_len,
    )


# ---- synthetic speech made at first use with espeak-ng (edgernn/data/kws.py) ---------------
from edgernn.data import kws as _kws  # noqa: E402,F401  (registers "kws")
