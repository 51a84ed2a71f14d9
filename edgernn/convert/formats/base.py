"""The format plug-in interface and registry.

A format plug-in writes the fp32 artifact of a model with one converter backend. Several
backends of one file type share a ``family`` (e.g. ``tflite``): ``--format tflite`` selects
every registered backend of that family, ``--format tflite-litert`` one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from edgernn.convert.artifact import Artifact
from edgernn.errors import EdgeRNNError
from edgernn.model.loading import LoadedModel


class Format(Protocol):
    name: str  # unique plug-in name, also the variant prefix: "onnx", "tflite-litert"
    family: str  # file type; targets map a family to a runtime: "onnx", "tflite"
    suffix: str
    runtime: str  # host runtime used for the parity check: "onnxruntime", "litert"

    def available(self) -> str | None:
        """None when usable here, else the reason (e.g. a missing extra and its install line)."""

    def export(self, model: LoadedModel, path: Path) -> Artifact:
        """Write ``path`` and return its artifact (size, hash and parity are filled later).
        Raise ExportError (an EdgeRNNError) with a one-line reason on failure."""


FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise EdgeRNNError(f"unknown format {name!r}; known formats: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def families() -> list[str]:
    return sorted({f.family for f in FORMATS.values()})


def expand_formats(names: list[str]) -> list[str]:
    """Turn family names (``tflite``) and plug-in names into plug-in names, in order."""
    out: list[str] = []
    for n in names:
        if n in FORMATS:
            picks = [n]
        else:
            picks = [f.name for f in FORMATS.values() if f.family == n]
            if not picks:
                known = sorted(set(FORMATS) | set(families()))
                raise EdgeRNNError(f"unknown format {n!r}; known formats: {', '.join(known)}")
        out += [p for p in picks if p not in out]
    return out
