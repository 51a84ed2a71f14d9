"""Model specs: a layer stack such as ``gru:128,lstm:128`` or ``bilstm:64x2`` (mixed stacks
allowed), an encoder/decoder forecaster ``gru:64/lstm:64`` (encoder stack ``/`` one decoder
block; ``gru:64>lstm:64`` is the same, quote it in a shell), and an ensemble ``lstm:64+gru:64``
(members trained separately, predictions averaged; each member a stack or an encoder/decoder).

``parse_layers`` returns a ``list[LayerSpec]`` for a stack (as before), an ``EncDecSpec`` or an
``EnsembleSpec``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from edgernn.errors import EdgeRNNError

_LAYER_RE = re.compile(r"^(bi)?(lstm|gru):(\d+)(?:x(\d+))?$")
_ENCDEC_SEP = re.compile(r"[/>]")
ENCDEC_SEP = "/"  # the printed separator: shell-safe, so a spec copied from output runs as is


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


@dataclass(frozen=True)
class EncDecSpec:
    """An encoder stack read over the input window, then one decoder block run for
    ``horizon`` steps from the encoder's final state (forecasting only)."""

    encoder: tuple[LayerSpec, ...]
    decoder: LayerSpec

    def __str__(self) -> str:
        return format_layers(list(self.encoder)) + ENCDEC_SEP + str(self.decoder)


@dataclass(frozen=True)
class EnsembleSpec:
    """Members trained separately (each its own seed), their predictions averaged."""

    members: tuple[list[LayerSpec] | EncDecSpec, ...]

    def __str__(self) -> str:
        return "+".join(format_layers(m) for m in self.members)


ModelSpec = list[LayerSpec] | EncDecSpec | EnsembleSpec


def _parse_stack(text: str) -> list[LayerSpec]:
    layers = []
    for part in text.split(","):
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


def _parse_member(text: str) -> list[LayerSpec] | EncDecSpec:
    parts = _ENCDEC_SEP.split(text)
    if len(parts) == 1:
        return _parse_stack(text)
    if len(parts) > 2:
        raise EdgeRNNError(f"--layers: {text!r} has more than one encoder/decoder separator; "
                           "write ENCODER/DECODER (example: gru:64/lstm:64)")
    encoder, decoder = _parse_stack(parts[0]), _parse_stack(parts[1])
    if len(decoder) != 1 or decoder[0].bidirectional:
        raise EdgeRNNError(f"--layers: the decoder {parts[1]!r} must be one forward block "
                           "cell:hidden[xN] with cell lstm or gru (example: gru:64/lstm:64)")
    return EncDecSpec(tuple(encoder), decoder[0])


def parse_layers(text: str) -> ModelSpec:
    """Parse a model spec; raise a one-line error naming the bad entry."""
    text = text.lower().replace(" ", "")
    members = [_parse_member(m) for m in text.split("+")]
    return members[0] if len(members) == 1 else EnsembleSpec(tuple(members))


def format_layers(layers: ModelSpec) -> str:
    if isinstance(layers, (EncDecSpec, EnsembleSpec)):
        return str(layers)
    return ",".join(str(x) for x in layers)
