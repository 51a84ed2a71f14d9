"""Bundled datasets. ``weather`` and ``temps`` are real (NOAA data shipped inside the
``vega_datasets`` PyPI package, read offline); ``tokens`` is synthetic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgernn.errors import EdgeRNNError


@dataclass
class Dataset:
    """Windows ready for training and held-out evaluation, in chronological split."""

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str
    real: bool
    num_classes: int | None = None
    horizon: int | None = None
    vocab_size: int | None = None
    feature_names: list[str] = field(default_factory=list)

    @property
    def seq_len(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def features(self) -> int | None:
        return None if self.vocab_size else int(self.x_train.shape[2])


_REGISTRY: dict[str, Callable[[], Dataset]] = {}


def register(name: str):
    def deco(fn: Callable[[], Dataset]) -> Callable[[], Dataset]:
        _REGISTRY[name] = fn
        return fn

    return deco


def names() -> list[str]:
    return sorted(_REGISTRY)


def load_dataset(name: str) -> Dataset:
    if name not in _REGISTRY:
        raise EdgeRNNError(f"unknown dataset {name!r}; bundled datasets: {', '.join(names())}")
    return _REGISTRY[name]()


def _windows(values: np.ndarray, seq: int, stride: int = 1) -> np.ndarray:
    idx = np.arange(0, len(values) - seq + 1, stride)
    return np.stack([values[i : i + seq] for i in idx])


@register("weather")
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


@register("temps")
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


@register("tokens")
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
