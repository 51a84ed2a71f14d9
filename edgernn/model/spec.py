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
            axes = check_example_size([Axis(int(a["size"]), a.get("name")) for a in d["axes"]])
            return cls(
                axes=axes,
                dtype=str(d.get("dtype", "float32")),
                task=d.get("task"),
                vocab_size=d.get("vocab_size"),
                num_classes=d.get("num_classes"),
                horizon=d.get("horizon"),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise EdgeRNNError(f"input spec in the model file is malformed ({e})") from None


_AXIS_RE = re.compile(r"^(?:([A-Za-z_]\w*)=)?(\d+)$")
_TIMES_RE = re.compile(r"(?<=\d)x(?=\d|[A-Za-z_]\w*=\d)")


def parse_shape(text: str, minimum: int = 2) -> list[Axis]:
    """Parse ``batch=1,seq=96,4`` (or ``1x96x4``) into axes; a named entry is a dynamic axis.
    A whole-window input needs ``minimum`` 2 axes (batch and sequence); a step input or a
    state 1."""
    axes: list[Axis] = []
    if minimum == 0 and text.strip() == "":
        return axes
    # ``1x576`` (as in a sweep file) is ``1,576``: an x between a size and a size or name=
    text = _TIMES_RE.sub(",", text.replace(" ", ""))
    for part in text.split(","):
        m = _AXIS_RE.match(part)
        if not m or int(m.group(2)) <= 0:
            raise EdgeRNNError(
                f"--input-shape {text!r}: entry {part!r} is not a positive size or name=size "
                "(example: batch=1,seq=96,4)"
            )
        axes.append(Axis(int(m.group(2)), m.group(1)))
    if len(axes) < minimum:
        raise EdgeRNNError(f"--input-shape {text!r}: a sequence input needs at least 2 axes")
    return check_example_size(axes)


MAX_EXAMPLE_VALUES = 10**8  # values of one example input (400 MB of float32)


def check_example_size(axes: list[Axis]) -> list[Axis]:
    """Refuse a shape whose example input would not fit a sane allocation (a file or option
    declaring a sequence of 10^9 steps), before anything allocates it."""
    n = 1
    for a in axes:
        if a.size < 0:
            raise EdgeRNNError(f"input shape {format_shape(axes)} has a negative size")
        n *= a.size
    if n > MAX_EXAMPLE_VALUES:
        raise EdgeRNNError(f"input shape {format_shape(axes)} has {n:,} values per example, "
                           f"more than {MAX_EXAMPLE_VALUES:,}; give a smaller example shape "
                           "(named axes such as seq stay dynamic)")
    return axes


def format_shape(axes: list[Axis]) -> str:
    return ",".join(str(a) for a in axes)


# --------------------------------------------------------------------------- signatures

INPUT_ROLES = ("data", "state")
OUTPUT_ROLES = ("prediction", "state")


@dataclass
class TensorSpec:
    """One named model input or output: axes (named ones are dynamic), dtype and role."""

    name: str
    axes: list[Axis]
    dtype: str = "float32"
    role: str = "data"  # inputs: data | state; outputs: prediction | state

    @property
    def shape(self) -> list[int]:
        return [a.size for a in self.axes]

    def with_sizes(self, **sizes: int) -> list[int]:
        return [sizes.get(a.name, a.size) if a.name else a.size for a in self.axes]

    def axis_index(self, name: str) -> int | None:
        return next((i for i, a in enumerate(self.axes) if a.name == name), None)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: a.name for i, a in enumerate(self.axes) if a.name}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": format_shape(self.axes), "dtype": self.dtype,
                "role": self.role}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), parse_shape(str(d["shape"]), minimum=0),
                   str(d.get("dtype", "float32")), str(d.get("role", "data")))

    def __str__(self) -> str:
        return f"{self.name}[{format_shape(self.axes)}] {self.dtype}"


@dataclass
class Signature:
    """Every input and output of a model and which output feeds which input at the next
    step (``state``: input name -> output name). A whole-window model is the case of one data
    input, one prediction output and no state."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    paired: str = "none"  # how the state pairs were found: given | shape | none

    @property
    def is_streaming(self) -> bool:
        return bool(self.state)

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output_index(self, name: str) -> int:
        return next(i for i, t in enumerate(self.outputs) if t.name == name)

    @property
    def data_inputs(self) -> list[TensorSpec]:
        return [t for t in self.inputs if t.role == "data"]

    @property
    def prediction_index(self) -> int:
        """Index of the first prediction output (what metrics judge)."""
        return next((i for i, t in enumerate(self.outputs) if t.role == "prediction"), 0)

    def state_feed(self) -> list[tuple[int, int]]:
        """(input index, output index) per state pair, in input order."""
        names = [t.name for t in self.inputs]
        return [(names.index(i), self.output_index(o)) for i, o in self.state.items()]

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
                "state": dict(self.state), "paired": self.paired}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        try:
            return cls([TensorSpec.from_dict(t) for t in d["inputs"]],
                       [TensorSpec.from_dict(t) for t in d.get("outputs") or []],
                       {str(k): str(v) for k, v in (d.get("state") or {}).items()},
                       str(d.get("paired", "given")))
        except (KeyError, TypeError, ValueError, AttributeError, EdgeRNNError) as e:
            raise EdgeRNNError(f"signature in the model file is malformed ({e})") from None

    def describe(self) -> str:
        """One line: ``x[batch=1,576] float32, state[2,batch=1,128] -> y[...], state_out[...]``."""
        ins = ", ".join(str(t) + (" (state)" if t.role == "state" else "") for t in self.inputs)
        outs = ", ".join(str(t) + (" (state)" if t.role == "state" else "") for t in self.outputs)
        pairs = "; ".join(f"{o} -> {i}" for i, o in self.state.items())
        return f"{ins} -> {outs}" + (f"; state {pairs} ({self.paired})" if pairs else "")


_NAME_RE = re.compile(r"^[A-Za-z_][\w.]*$")


def parse_input(text: str) -> TensorSpec:
    """Parse ``--input NAME:SHAPE[:DTYPE][:state]`` (e.g. ``state:2,batch=1,128``)."""
    parts = text.split(":")
    if len(parts) < 2 or not _NAME_RE.match(parts[0]):
        raise EdgeRNNError(f"--input {text!r}: expected NAME:SHAPE[:DTYPE][:state] "
                           "(example: x:batch=1,576 or state:2,batch=1,128)")
    name, shape, rest = parts[0], parts[1], parts[2:]
    dtype, role = "float32", "data"
    for r in rest:
        if r in DTYPES:
            dtype = r
        elif r in INPUT_ROLES:
            role = r
        else:
            raise EdgeRNNError(f"--input {text!r}: {r!r} is neither a dtype {DTYPES} nor a role "
                               f"{INPUT_ROLES}")
    try:
        axes = parse_shape(shape, minimum=1)
    except EdgeRNNError as e:
        raise EdgeRNNError(f"--input {text!r}: {str(e).split(': ', 1)[-1]}") from None
    return TensorSpec(name, axes, dtype, role)


def parse_state(text: str) -> tuple[str, str]:
    """Parse ``--state INPUT=OUTPUT`` (OUTPUT: an output index or name)."""
    name, sep, out = text.partition("=")
    if not sep or not name or not out:
        raise EdgeRNNError(f"--state {text!r}: expected INPUT=OUTPUT, OUTPUT an output index or "
                           "name (example: state=1)")
    return name.strip(), out.strip()
