"""Layer specs such as ``gru:128,lstm:128`` or ``bilstm:64x2`` (mixed stacks allowed)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from edgernn.errors import EdgeRNNError

_LAYER_RE = re.compile(r"^(bi)?(lstm|gru):(\d+)(?:x(\d+))?$")


@dataclass(frozen=True)
class LayerSpec:
    """One recurrent block: cell type, hidden size, stacked layers, direction."""

    cell: str
    hidden: int
    num_layers: int = 1
    bidirectional: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        s = f"{'bi' if self.bidirectional else ''}{self.cell}:{self.hidden}"
        return s + (f"x{self.num_layers}" if self.num_layers > 1 else "")


def parse_layers(text: str) -> list[LayerSpec]:
    """Parse a comma-separated layer spec; raise a one-line error naming the bad entry."""
    layers = []
    for part in text.lower().replace(" ", "").split(","):
        m = _LAYER_RE.match(part)
        if not m:
            raise EdgeRNNError(
                f"--layers: {part!r} is not a layer; write cell:hidden[xN] with cell lstm, gru, "
                "bilstm or bigru (example: gru:128,lstm:128)"
            )
        hidden, n = int(m.group(3)), int(m.group(4) or 1)
        if hidden <= 0 or n <= 0:
            raise EdgeRNNError(f"--layers: {part!r} needs a positive hidden size and layer count")
        layers.append(LayerSpec(m.group(2), hidden, n, bool(m.group(1))))
    return layers


def format_layers(layers: list[LayerSpec]) -> str:
    return ",".join(str(x) for x in layers)
