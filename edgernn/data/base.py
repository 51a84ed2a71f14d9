"""The dataset type and the registry every bundled dataset is declared in (the datasets
themselves are in ``datasets.py``; the user's own text CSV in ``text.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgernn.errors import EdgeRNNError

if TYPE_CHECKING:
    from edgernn.data.augment import Augment


@dataclass
class Dataset:
    """Samples ready for training and held-out evaluation. Time series are split in time order;
    the archive sets keep their published train/test split; text is shuffled with a fixed seed
    (each description says which)."""

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
    # true (unpadded) lengths of variable-length samples; None when every sample is full length
    lengths_train: np.ndarray | None = None
    lengths_test: np.ndarray | None = None
    source: str = ""
    license: str = ""
    class_names: list[str] = field(default_factory=list)
    tokenizer_json: str | None = None  # text datasets: the tokenizers.Tokenizer that made the ids
    # applied to training batches (none of the bundled sets has one: SpecAugment on kws slowed
    # the LSTM more than the epoch cap allows; see issue 25's note)
    augment: Augment | None = None
    # who made each training sample (kws: the voice's variant family); a validation split then
    # holds out whole groups, as the held-out split holds out whole speakers
    groups_train: np.ndarray | None = None

    @property
    def seq_len(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def features(self) -> int | None:
        return None if self.vocab_size else int(self.x_train.shape[2])


@dataclass(frozen=True)
class Info:
    """What ``edgernn datasets`` can say about a dataset without loading it."""

    name: str
    domain: str  # e.g. speech, sensor, text
    source: str
    license: str
    fetched: bool  # needs ./scripts/fetch_data.sh (files from PyPI packages at setup time)
    # generated datasets: what to say instead of loading when loading would generate the data
    # (or cannot); None when it is ready. ``edgernn datasets`` asks before loading.
    status: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)


_REGISTRY: dict[str, Callable[[], Dataset]] = {}
INFO: dict[str, Info] = {}


def register(name: str, *, domain: str = "", source: str = "", license: str = "",
             fetched: bool = False, status: Callable[[], str | None] | None = None):
    def deco(fn: Callable[[], Dataset]) -> Callable[[], Dataset]:
        _REGISTRY[name] = fn
        INFO[name] = Info(name, domain, source, license, fetched, status)
        return fn

    return deco


def names() -> list[str]:
    return sorted(_REGISTRY)


def info(name: str) -> Info:
    if name not in INFO:
        raise EdgeRNNError(f"unknown dataset {name!r}; bundled datasets: {', '.join(names())}")
    return INFO[name]


def load_dataset(name: str) -> Dataset:
    if name not in _REGISTRY:
        raise EdgeRNNError(f"unknown dataset {name!r}; bundled datasets: {', '.join(names())}")
    ds = _REGISTRY[name]()
    meta = INFO[name]
    ds.source = ds.source or meta.source
    ds.license = ds.license or meta.license
    return ds
