"""Symbolic values of the tflite-keras graph walk, and where in the user's source they are.

A tensor of the layer chain is a :class:`Sym`, an RNN's ``h_n``/``c_n`` a :class:`State`,
zeros built in forward (initial states) a :class:`Zero`, and a value the chain cannot carry a
:class:`Poison` (it fails when used, so an unknown op using it is named instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

AXIS = {"B": "batch", "T": "time", "C": "channel"}
INT_MAX = 2 ** 62  # slice ends at or above this mean "to the end"


@dataclass(frozen=True)
class Sym:
    """A tensor of the chain: made by plan step ``step`` (-1: the raw input)."""

    step: int
    labels: tuple[str, ...]  # PyTorch axis order, e.g. ("B", "C", "T")
    shape: tuple[int, ...]  # example sizes
    integer: bool = False

    @property
    def width(self) -> int:
        return self.shape[self.labels.index("C")] if "C" in self.labels else 0


@dataclass(frozen=True)
class State:
    """``h_n`` or ``c_n`` of an RNN call, [layers * directions, B, H]; ``index`` once one
    entry is selected. ``out`` is the RNN's output sequence."""

    kind: str
    out: Sym
    layers: int
    bidirectional: bool
    index: int | None = None

    @property
    def entries(self) -> int:
        return self.layers * (2 if self.bidirectional else 1)


@dataclass(frozen=True)
class Zero:
    """A tensor of zeros (an initial RNN state built in forward)."""


@dataclass(frozen=True)
class Poison:
    """A value the chain cannot carry (the indices of a max, an unsupported slice); using it
    raises Unsupported with ``message``, so an unknown op that follows is named instead."""

    message: str


def locate(text: str, innermost_first: bool) -> tuple[str, str]:
    """(``file.py:line`` of the innermost frame outside torch, ``code/...:line`` of serialized
    TorchScript code) in a TorchScript source range or an fx stack trace; "" when absent."""
    frames = [(f, int(n)) for f, n in re.findall(r'File "([^"]+)", line (\d+)', text or "")]
    frames += [(f.strip(), int(n)) for f, n in re.findall(r"^\s*(\S.*?)\((\d+)\): \w+", text or "", re.M)]
    if not innermost_first:
        frames.reverse()
    user = next((f"{Path(f).name}:{n}" for f, n in frames if not _library(f)), "")
    serialized = next((f"{f}:{n}" for f, n in frames if f.startswith("code/")), "")
    return user, serialized


def _library(path: str) -> bool:
    """True for a frame of torch, of serialized TorchScript, or of edgernn's export formats
    (``edgernn/convert/formats/``, this package's parent), i.e. not the user's code."""
    import torch

    p = path.replace("\\", "/")
    return (p.startswith(("code/", "<")) or p.startswith(Path(torch.__file__).parent.as_posix())
            or p.startswith(Path(__file__).parents[1].as_posix()))


def module_params(m: Any) -> dict[str, np.ndarray]:
    """A module's own parameters and buffers as float32 numpy arrays."""
    out = {}
    for k, v in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
        if v is not None:
            out[k] = v.detach().cpu().numpy().astype(np.float32)
    return out


def first_poison(v: Any) -> Poison | None:
    if isinstance(v, Poison):
        return v
    if isinstance(v, (tuple, list)):
        for item in v:
            p = first_poison(item)
            if p is not None:
                return p
    return None


def x_shape(x: Sym) -> tuple[int, ...]:
    return tuple(x.shape)
