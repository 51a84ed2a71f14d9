"""What an ONNX file stores as weights, and in which element type.

Weights live in initializers and in ``Constant`` nodes (the TorchScript exporter keeps a scripted
model's LSTM weights there), in the main graph and in every sub-graph (If/Loop/Scan bodies). Both
the int8 share and the float16 share of a quantized file count all of them, on both sides of the
fraction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

# tensors smaller than this are scales, zero points, shapes and indices, not weights
MIN_ELEMENTS = 16
FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BFLOAT16})
FP16_TYPES = frozenset({TensorProto.FLOAT16})
INT8_TYPES = frozenset({TensorProto.INT8, TensorProto.UINT8})
WEIGHT_TYPES = FLOAT_TYPES | FP16_TYPES | INT8_TYPES


@dataclass(frozen=True)
class WeightCensus:
    """Weight elements of one file by storage type."""

    int8: int = 0
    float16: int = 0
    float32: int = 0  # float32, float64 and bfloat16
    tensors: int = 0

    @property
    def total(self) -> int:
        return self.int8 + self.float16 + self.float32

    @property
    def int8_fraction(self) -> float:
        return self.int8 / self.total if self.total else 0.0

    @property
    def float16_fraction(self) -> float:
        return self.float16 / self.total if self.total else 0.0


def load(model: ModelProto | str | Path) -> ModelProto:
    """The model itself, or the file loaded without its external data (only dims are needed)."""
    if isinstance(model, ModelProto):
        return model
    return onnx.load(str(model), load_external_data=False)


def sub_graphs(node: NodeProto) -> Iterator[GraphProto]:
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def graphs(graph: GraphProto) -> Iterator[GraphProto]:
    """``graph`` and every graph nested in it."""
    yield graph
    for node in graph.node:
        for g in sub_graphs(node):
            yield from graphs(g)


def all_nodes(model: ModelProto) -> Iterator[NodeProto]:
    for g in graphs(model.graph):
        yield from g.node


def constant_values(graph: GraphProto) -> Iterator[tuple[str, TensorProto]]:
    """(output name, tensor) of each ``Constant`` node holding a tensor in ``graph``."""
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value" and a.type == AttributeProto.TENSOR:
                    yield node.output[0], a.t


def stored_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Every tensor held in the file: initializers and ``Constant`` values, all graphs."""
    for g in graphs(model.graph):
        yield from g.initializer
        yield from (t for _, t in constant_values(g))


def elements(t: TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def is_weight(t: TensorProto) -> bool:
    return t.data_type in WEIGHT_TYPES and elements(t) >= MIN_ELEMENTS


def constant_tensors(model: ModelProto) -> dict[str, TensorProto]:
    """Value name -> tensor, for every initializer and ``Constant`` output (all graphs)."""
    out: dict[str, TensorProto] = {}
    for g in graphs(model.graph):
        out.update((t.name, t) for t in g.initializer)
        out.update(constant_values(g))
    return out


def constant_node_weights(model: ModelProto | str | Path) -> int:
    """How many weight tensors sit in ``Constant`` nodes (quantizers see initializers only)."""
    return sum(is_weight(t) for g in graphs(load(model).graph) for _, t in constant_values(g))


def weight_census(model: ModelProto | str | Path) -> WeightCensus:
    """Weight elements (tensors of >= MIN_ELEMENTS float or 8-bit integer elements) by type."""
    q = f16 = f32 = count = 0
    for t in stored_tensors(load(model)):
        if not is_weight(t):
            continue
        n = elements(t)
        count += 1
        if t.data_type in INT8_TYPES:
            q += n
        elif t.data_type in FP16_TYPES:
            f16 += n
        else:
            f32 += n
    return WeightCensus(int8=q, float16=f16, float32=f32, tensors=count)


def share(frac: float) -> str:
    """A percentage that never rounds a partial share up to 100% or down to 0%."""
    if 0.0 < frac < 1.0:
        return f"{min(max(frac, 0.001), 0.999):.1%}"
    return f"{frac:.0%}"
