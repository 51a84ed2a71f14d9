"""InputSpec: what a model takes (shape with named dynamic axes, dtype) and what task it solves."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from edgernn.errors import EdgeRNNError

TASKS = ("classify", "forecast")
DTYPES = ("float32", "int64", "int32")


@dataclass(frozen=True)
class Axis:
    """One input axis: a name when it is dynamic (``batch``, ``seq``), and an example size."""

    size: int
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.name}={self.size}" if self.name else str(self.size)


@dataclass
class InputSpec:
    """Shape, dtype and task of a sequence model's single input."""

    axes: list[Axis]
    dtype: str = "float32"
    task: str | None = None
    vocab_size: int | None = None
    num_classes: int | None = None
    horizon: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise EdgeRNNError(f"input dtype {self.dtype!r} is not supported; use one of {DTYPES}")
        if self.task is not None and self.task not in TASKS:
            raise EdgeRNNError(f"task {self.task!r} is not supported; use one of {TASKS}")

    @property
    def shape(self) -> list[int]:
        return [a.size for a in self.axes]

    def axis_index(self, name: str) -> int | None:
        for i, a in enumerate(self.axes):
            if a.name == name:
                return i
        return None

    @property
    def batch_axis(self) -> int:
        i = self.axis_index("batch")
        return 0 if i is None else i

    @property
    def seq_axis(self) -> int | None:
        return self.axis_index("seq")

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: a.name for i, a in enumerate(self.axes) if a.name}

    @property
    def is_tokens(self) -> bool:
        return self.dtype in ("int64", "int32")

    def with_sizes(self, **sizes: int) -> list[int]:
        """Example shape with named axes set to other sizes (e.g. ``seq=40, batch=2``)."""
        return [sizes.get(a.name, a.size) if a.name else a.size for a in self.axes]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["axes"] = [{"size": a.size, "name": a.name} for a in self.axes]
        d["shape"] = format_shape(self.axes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        try:
            axes = [Axis(int(a["size"]), a.get("name")) for a in d["axes"]]
            return cls(
                axes=axes,
                dtype=str(d.get("dtype", "float32")),
                task=d.get("task"),
                vocab_size=d.get("vocab_size"),
                num_classes=d.get("num_classes"),
                horizon=d.get("horizon"),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise EdgeRNNError(f"input spec in the model file is malformed ({e})") from None


_AXIS_RE = re.compile(r"^(?:([A-Za-z_]\w*)=)?(\d+)$")


def parse_shape(text: str) -> list[Axis]:
    """Parse ``batch=1,seq=96,4`` into axes; a named entry is a dynamic axis."""
    axes = []
    for part in text.replace(" ", "").split(","):
        m = _AXIS_RE.match(part)
        if not m or int(m.group(2)) <= 0:
            raise EdgeRNNError(
                f"--input-shape {text!r}: entry {part!r} is not a positive size or name=size "
                "(example: batch=1,seq=96,4)"
            )
        axes.append(Axis(int(m.group(2)), m.group(1)))
    if len(axes) < 2:
        raise EdgeRNNError(f"--input-shape {text!r}: a sequence input needs at least 2 axes")
    return axes


def format_shape(axes: list[Axis]) -> str:
    return ",".join(str(a) for a in axes)
