"""An independent count of what an ONNX file stores and runs (tests only): onnx + numpy, no
edgernn code."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def stored_tensors(graph):
    """Initializers and Constant-node tensors of ``graph`` and its sub-graphs (test's own walk)."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value":
                yield a.t
            if a.type == onnx.AttributeProto.GRAPH:
                yield from stored_tensors(a.g)
            for g in a.graphs:
                yield from stored_tensors(g)


def independent_shares(path) -> dict[str, float]:
    """Share of weight elements (tensors of >= 16 elements: not scales, zero points or shapes)
    stored as int8/uint8, float16 and wider floats, read with onnx + numpy."""
    counts = {"int8": 0, "fp16": 0, "fp32": 0}
    for t in stored_tensors(onnx.load(str(path)).graph):
        arr = numpy_helper.to_array(t)
        if arr.size < 16:
            continue
        if arr.dtype in (np.int8, np.uint8):
            counts["int8"] += arr.size
        elif arr.dtype == np.float16:
            counts["fp16"] += arr.size
        elif arr.dtype.kind == "f":
            counts["fp32"] += arr.size
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def op_types(path) -> list[str]:
    """Every node's op type in the file, sub-graphs included."""
    def walk(graph):
        for node in graph.node:
            yield node.op_type
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from walk(a.g)
    return list(walk(onnx.load(str(path)).graph))
