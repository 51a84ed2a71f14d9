"""Which weighted ONNX ops a quantizer turned into int8, and why the others stayed float.

Before quantizing, every node that holds weights gets a marker in its name; onnxruntime names
the nodes it puts in a node's place after it (``<name>_quant``, ``<name>_MatMul_quant``), so the
marker finds each node's replacement afterwards. The markers are removed again.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from onnx import ModelProto, TensorProto

from edgernn.convert.formats.onnx_weights import (
    FLOAT_TYPES,
    INT8_TYPES,
    all_nodes,
    constant_tensors,
    graphs,
    is_weight,
)

# op type -> index of its weight input
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1, "LSTM": 1, "GRU": 1,
                "RNN": 1, "Attention": 1, "Gather": 0}
ORT_DYNAMIC = {"Conv", "MatMul", "Gemm", "LSTM", "Attention", "Gather"}  # ops it can quantize
INT8_OPS = ("DynamicQuantizeLSTM", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "QAttention", "QGemm")
WHY_FLOAT = {
    "GRU": "onnxruntime cannot quantize GRU (onnxruntime#9796)",
    "RNN": "onnxruntime has no int8 RNN",
}
_MARK = re.compile(r"#edgernn(\d+)#")


@dataclass
class WeightedNode:
    name: str
    op_type: str
    const_weight: bool  # its weight input is a stored float tensor
    in_constant_node: bool = False  # ... held by a Constant node (quantize_dynamic skips those)
    fate: str = ""  # "-> ConvInteger" or "stays fp32: <reason>"


def _float_const(t: TensorProto | None) -> bool:
    return t is not None and t.data_type in FLOAT_TYPES


def mark_weighted_nodes(model: ModelProto) -> list[WeightedNode]:
    """Mark (in place) every node holding weights; return them in graph order."""
    consts = constant_tensors(model)
    inits = {t.name for g in graphs(model.graph) for t in g.initializer}
    found: list[WeightedNode] = []
    for node in all_nodes(model):
        if node.op_type == "Constant":
            continue
        idx = WEIGHT_INPUT.get(node.op_type)
        w = consts.get(node.input[idx]) if idx is not None and len(node.input) > idx else None
        if node.op_type == "Gather" and not _float_const(w):
            continue  # index arithmetic, not an embedding table
        holds = any(is_weight(consts[i]) and consts[i].data_type in FLOAT_TYPES
                    for i in node.input if i in consts)
        if idx is None and not holds:
            continue
        held = _float_const(w) and node.input[idx] not in inits
        found.append(WeightedNode(node.name, node.op_type, _float_const(w), held))
        node.name = f"{node.name}#edgernn{len(found) - 1}#"
    return found


def read_fates(quantized: ModelProto, nodes: list[WeightedNode]) -> list[WeightedNode]:
    """Fill each node's fate from the quantized model and remove the markers (in place)."""
    consts = constant_tensors(quantized)
    groups: dict[int, list] = {}
    for node in all_nodes(quantized):
        m = _MARK.search(node.name)
        if m:
            groups.setdefault(int(m.group(1)), []).append(node)
            node.name = _MARK.sub("", node.name)
    for i, wn in enumerate(nodes):
        group = groups.get(i, [])
        int8 = [n.op_type for n in group if n.op_type in INT8_OPS]
        on_int8 = any(consts[x].data_type in INT8_TYPES for n in group for x in n.input
                      if x in consts)
        if int8:
            wn.fate = f"-> {int8[0]}"
        elif on_int8 and wn.op_type == "Gather":
            wn.fate = "-> int8 table (Gather + DequantizeLinear)"
        elif on_int8:
            wn.fate = f"-> {wn.op_type} on int8 weights"
        else:
            wn.fate = f"stays fp32: {_why_float(wn)}"
    return nodes


def _why_float(wn: WeightedNode) -> str:
    if wn.op_type in WHY_FLOAT:
        return WHY_FLOAT[wn.op_type]
    if wn.op_type in WEIGHT_INPUT and not wn.const_weight:
        return "no constant weight"
    if wn.in_constant_node:
        return "weight held in a Constant node (quantize_dynamic sees initializers only)"
    if wn.op_type in ORT_DYNAMIC:
        return "onnxruntime's quantizer left it"
    return "no int8 form in onnxruntime dynamic quantization"


def summarize(nodes: list[WeightedNode]) -> str:
    """One line: ``1 LSTM -> DynamicQuantizeLSTM; 2 Conv -> ConvInteger; 1 GRU stays fp32: ...``
    (int8 ops first, each group in graph order)."""
    ordered = sorted(nodes, key=lambda n: n.fate.startswith("stays "))
    counts = Counter((n.op_type, n.fate) for n in ordered)
    parts = []
    for (op, fate), k in counts.items():
        if k > 1 and fate.startswith("stays "):
            fate = "stay " + fate.removeprefix("stays ")
        parts.append(f"{k} {op} {fate}")
    return "; ".join(parts)
