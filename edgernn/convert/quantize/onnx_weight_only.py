"""ONNX int8 weight-only: every weight stored int8, every op computing in fp32.

``int8-dynamic`` (``onnx_dynamic``) quantizes activations on the fly inside LSTM (DynamicQuantizeLSTM),
MatMul and Conv, which can cost a stacked LSTM accuracy. This variant only rounds the weights:

- every ``LSTM`` and ``GRU`` node stays onnxruntime's fp32 kernel, its W and R stored as symmetric
  int8 per output row (``decompose_rnn_int8`` form ``"node"``);
- every other weight (>= ``MIN_ELEMENTS`` elements, 2-D or more) of ``MatMul``, ``Gemm``, ``Conv``,
  ``ConvTranspose`` and every embedding table (``Gather`` data) is stored as symmetric int8 per
  output channel (per row of a table).

Each comes back as ``Cast`` (int8 -> float) + ``Mul`` (scale) from initializers only, which
onnxruntime constant-folds into an fp32 initializer when the session loads: a ~4x smaller file
that runs like the fp32 one, its outputs those of fp32 arithmetic on the rounded weights. Biases
and small tensors stay fp32. The notes count what the written file holds and check the fold on
an onnxruntime session.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.onnx import op_census
from edgernn.convert.quantize.base import NotApplicable, register_quantizer
from edgernn.errors import EdgeRNNError
from edgernn.model.loading import LoadedModel

MIN_ELEMENTS = 1024  # smaller weights stay fp32 (their scales would cost what int8 saves)
RNN_OPS = ("LSTM", "GRU")
# op type -> (index of the weight input, its output-channel axis); Gemm's depends on transB
WEIGHT_AXIS = {"MatMul": (1, -1), "Gemm": (1, None), "Conv": (1, 0), "ConvTranspose": (1, 1),
               "Gather": (0, 0)}


def _weight_axis(node: Any) -> tuple[int, int] | None:
    spec = WEIGHT_AXIS.get(node.op_type)
    if spec is None or node.domain not in ("", "ai.onnx"):
        return None
    idx, axis = spec
    if node.op_type == "Gemm":
        from onnx import helper

        trans_b = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "transB"), 0)
        axis = 0 if trans_b else 1
    return idx, axis


def store_weights_int8(model: Any, min_elements: int = MIN_ELEMENTS) -> tuple[int, int]:
    """In place: every float32 initializer of >= ``min_elements`` elements and rank >= 2 that is
    the weight input of a MatMul/Gemm/Conv/ConvTranspose/Gather becomes an int8 initializer and a
    scale, joined by Cast + Mul whose output keeps the initializer's name (so every reader, in
    sub-graphs too, gets it unchanged). Returns (tensors rewritten, float weights left because
    they are smaller than ``min_elements``)."""
    from onnx import TensorProto, helper, numpy_helper

    from edgernn.convert.formats.onnx_weights import graphs
    from edgernn.convert.quantize.onnx_rnn_int8 import quantize_axis

    done = small = 0
    for g in list(graphs(model.graph)):
        inits = {t.name: t for t in g.initializer}
        listed = {v.name for v in [*g.input, *g.output]}  # overridable or returned: left alone
        axes: dict[str, int] = {}  # initializer -> output-channel axis (its first reader's)
        too_small: set[str] = set()
        for sg in graphs(g):  # readers of this graph's initializers, in nested bodies too
            for n in sg.node:
                wa = _weight_axis(n)
                if wa is None or len(n.input) <= wa[0]:
                    continue
                name = n.input[wa[0]]
                t = inits.get(name)
                if t is None or name in listed or t.data_type != TensorProto.FLOAT or len(t.dims) < 2:
                    continue
                if int(np.prod(t.dims)) < min_elements:
                    too_small.add(name)
                else:
                    axes.setdefault(name, wa[1])
        small += len(too_small)
        names = {t.name for sg in graphs(model.graph) for t in sg.initializer} | \
                {v for sg in graphs(model.graph) for n in sg.node for v in [*n.input, *n.output]}
        new_nodes, keep = [], []
        for t in g.initializer:
            axis = axes.get(t.name)
            if axis is None:
                keep.append(t)
                continue
            q, scale = quantize_axis(numpy_helper.to_array(t).astype(np.float32), axis)
            base = t.name.replace("/", "_").strip("_") or "w"
            qn, sn, cn = (_fresh(f"{base}_int8", names), _fresh(f"{base}_scale", names),
                          _fresh(f"{base}_int8_float", names))
            keep += [numpy_helper.from_array(q, qn), numpy_helper.from_array(scale, sn)]
            new_nodes += [helper.make_node("Cast", [qn], [cn], name=_fresh(f"{base}/Cast", names),
                                           to=TensorProto.FLOAT),
                          helper.make_node("Mul", [cn, sn], [t.name], name=_fresh(f"{base}/Mul", names))]
            done += 1
        if new_nodes:
            del g.initializer[:]
            g.initializer.extend(keep)
            rest = list(g.node)
            del g.node[:]
            g.node.extend(new_nodes + rest)  # initializers only: valid first in topological order
    return done, small


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def int8_fed_weights(model: Any) -> Counter[str]:
    """Per op type, the nodes (all graphs) whose weight input is ``Mul(Cast(int8 initializer),
    float scale)``, read from ``model`` as written."""
    from onnx import TensorProto

    from edgernn.convert.formats.onnx_weights import graphs

    int8 = {t.name for g in graphs(model.graph) for t in g.initializer
            if t.data_type == TensorProto.INT8}
    made: dict[str, Any] = {o: n for g in graphs(model.graph) for n in g.node for o in n.output}

    def via_cast_mul(name: str) -> bool:
        mul = made.get(name)
        if mul is None or mul.op_type != "Mul":
            return False
        cast = made.get(mul.input[0])
        return cast is not None and cast.op_type == "Cast" and cast.input[0] in int8

    out: Counter[str] = Counter()
    for g in graphs(model.graph):
        for n in g.node:
            if n.op_type in RNN_OPS:
                idx = [1, 2]
            else:
                wa = _weight_axis(n)
                idx = [wa[0]] if wa else []
            if idx and all(len(n.input) > i and via_cast_mul(n.input[i]) for i in idx):
                out[n.op_type] += 1
    return out


def describe_fed(fed: Counter[str]) -> str:
    """``2 LSTM (W and R per output row), 1 MatMul (per output channel), ...``"""
    how = {"LSTM": "W and R per output row", "GRU": "W and R per output row",
           "Gather": "embedding table, per row"}
    return ", ".join(f"{k} {op} ({how.get(op, 'per output channel')})"
                     for op, k in sorted(fed.items(), key=lambda x: (x[0] not in RNN_OPS, x[0])))


def fold_check(path: Path) -> tuple[int, int] | None:
    """(Cast+Mul dequantizations left, in the file) after onnxruntime's default session
    optimizations, read from the session's optimized model; None when it cannot be read."""
    import onnx
    import onnxruntime as ort

    from edgernn.convert.formats.onnx_weights import all_nodes, graphs

    def casts(m: Any) -> int:
        int8 = {t.name for g in graphs(m.graph) for t in g.initializer
                if t.data_type == onnx.TensorProto.INT8}
        return sum(1 for n in all_nodes(m) if n.op_type == "Cast" and n.input[0] in int8)

    total = casts(onnx.load(str(path)))
    try:
        with tempfile.TemporaryDirectory(prefix="edgernn-fold-") as tmp:
            so = ort.SessionOptions()
            so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
            so.log_severity_level = 3
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            left = casts(onnx.load(so.optimized_model_filepath))
    except Exception:
        return None
    return left, total


class OnnxWeightOnlyInt8:
    """int8-stored weights, fp32 compute (see the module docstring); measured beside
    int8-dynamic as another setting: select keeps the faster within the accuracy budget."""

    format = "onnx"
    mode = "dynamic"
    label = "int8-weight-only"
    twin = "int8-dynamic"
    change = "weights int8, compute fp32"
    kind = "setting"
    opt_in = None  # made by default
    # no ``reduce_range``: fp32 compute cannot saturate, so ``exporting.seven_bit`` leaves it as is

    def available(self) -> str | None:
        from edgernn.convert.quantize.onnx_dynamic import ort_quantization_missing

        return ort_quantization_missing()

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        import onnx

        from edgernn.convert.formats.onnx_weights import all_nodes, share, weight_census
        from edgernn.convert.quantize.onnx_dynamic import pre_process
        from edgernn.convert.quantize.onnx_rnn_int8 import decompose_rnn_int8

        logging.getLogger().setLevel(logging.ERROR)
        notes: list[str] = []
        with tempfile.TemporaryDirectory(prefix="edgernn-wo-") as tmp:
            src, failed = pre_process(Path(fp32.path), Path(tmp) / "pre.onnx")
            if failed:
                notes.append(failed)
            m = onnx.load(str(src))
            if any(n.op_type in RNN_OPS for n in all_nodes(m)):
                dst = Path(tmp) / "rnn.onnx"
                # pre_processed even when quant_pre_process failed: it would fail again, and the
                # node form reads weights held in Constant nodes as well
                res = decompose_rnn_int8(src, dst, lstm=True, form="node", pre_processed=True)
                notes += [f"{op} {name} kept fp32: {why}" for name, op, why in res["skipped"]]
                if res["nodes"]:
                    m = onnx.load(str(dst))
        _, small = store_weights_int8(m)
        try:
            onnx.checker.check_model(m)
        except onnx.checker.ValidationError as e:
            raise EdgeRNNError("the int8 weight-only file is not a valid ONNX model: "
                               f"{str(e).splitlines()[0][:200]}") from e
        census = weight_census(m)
        if census.int8 == 0:
            raise NotApplicable("nothing to store int8: the graph has no LSTM/GRU, MatMul, Gemm, "
                                f"Conv or embedding weight of >= {MIN_ELEMENTS} elements")
        onnx.save(m, str(path))
        written = onnx.load(str(path))
        census, fed = weight_census(written), int8_fed_weights(written)
        frac = census.int8_fraction
        folded = fold_check(path)
        notes.insert(0, f"int8-stored weights: {share(frac)} of {census.total} weight elements "
                        "(initializers and Constant tensors)"
                     + ("; onnxruntime folds them to fp32 at load: fp32 compute"
                        if folded is not None and not folded[0] else "; fp32 compute"))
        notes.insert(1, "int8 weights (symmetric) through Cast + Mul: " + describe_fed(fed)
                     + "; biases fp32")
        if small:
            notes.append(f"{small} weight tensor(s) under {MIN_ELEMENTS} elements kept fp32")
        unfed = Counter(n.op_type for n in all_nodes(written) if n.op_type in RNN_OPS)
        unfed.subtract(fed)
        for op, k in unfed.items():
            if k > 0:
                notes.append(f"{k} {op} kept fp32 weights")
        if folded is None:
            notes.append("the constant fold at load was not checked (onnxruntime could not save "
                         "its optimized graph)")
        elif folded[0]:
            notes.append(f"onnxruntime left {folded[0]} of {folded[1]} int8 weight Cast(s) "
                         "unfolded at load: they run on every call")
        else:
            notes.append(f"checked: onnxruntime's session folds all {folded[1]} int8 weight "
                         "Cast + Mul(s) into fp32 initializers at load")
        return Artifact(
            variant=f"onnx-{self.label}", format="onnx", quantization=self.label,
            runtime=fp32.runtime, path=str(path), ops=op_census(path), notes=notes,
            quantized_fraction=frac, accepts_other_seq_len=fp32.accepts_other_seq_len,
            dynamic_batch=fp32.dynamic_batch,
            backend="onnxruntime.quantization quant_pre_process + edgernn int8 weight storage "
                    "(LSTM/GRU node form, Cast + Mul per output channel); fp32 compute",
        )


register_quantizer(OnnxWeightOnlyInt8())
