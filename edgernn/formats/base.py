"""The format plug-in interface and registry."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from edgernn.artifact import Artifact
from edgernn.errors import EdgeRNNError
from edgernn.loading import LoadedModel


class Format(Protocol):
    """Writes the fp32 artifact of a model; quantizers derive the other variants from it."""

    name: str
    suffix: str
    runtime: str

    def available(self) -> str | None:
        """None when usable here, else the reason (e.g. a missing extra and its install line)."""

    def export(self, model: LoadedModel, path: Path) -> Artifact:
        """Write ``path`` and return its artifact (size, hash and parity are filled later)."""


FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise EdgeRNNError(f"unknown format {name!r}; known formats: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]
