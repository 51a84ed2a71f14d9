"""ONNX int8 dynamic quantization (onnxruntime ``quantize_dynamic``).

LSTM becomes DynamicQuantizeLSTM; Linear/Embedding weights become int8. onnxruntime has no
quantized GRU (onnxruntime#9796), so GRU layers stay fp32 and the notes say so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgernn.artifact import Artifact
from edgernn.formats.onnx import op_census
from edgernn.loading import LoadedModel
from edgernn.quantize.base import NotApplicable, register_quantizer

QUANT_OPS = {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger"}


def weight_fraction_int8(path: Path) -> float:
    """Share of weight elements stored as 8-bit integers."""
    import onnx
    from onnx import TensorProto

    init = onnx.load(str(path)).graph.initializer
    total = q = 0
    for t in init:
        n = 1
        for d in t.dims:
            n *= d
        if n < 16:  # scales, zero points, shapes
            continue
        total += n
        if t.data_type in (TensorProto.INT8, TensorProto.UINT8):
            q += n
    return q / total if total else 0.0


class OnnxDynamicInt8:
    format = "onnx"
    mode = "dynamic"
    label = "int8-dynamic"

    def available(self) -> str | None:
        try:
            import onnxruntime.quantization  # noqa: F401
        except ImportError:
            return "onnxruntime.quantization is not importable (pip install onnxruntime)"
        return None

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)
        quantize_dynamic(fp32.path, str(path), weight_type=QuantType.QInt8)
        before, after = fp32.ops, op_census(path)
        if not QUANT_OPS & set(after) and after.get("Gather", 0) == before.get("Gather", 0):
            path.unlink(missing_ok=True)
            raise NotApplicable("onnxruntime dynamic quantization changed nothing in this model")
        frac = weight_fraction_int8(path)
        if frac == 0.0:
            path.unlink(missing_ok=True)
            raise NotApplicable("onnxruntime dynamic quantization left every weight in fp32")
        notes = []
        lstm_q = after.get("DynamicQuantizeLSTM", 0)
        if lstm_q:
            notes.append(f"{lstm_q} LSTM op(s) -> DynamicQuantizeLSTM (int8 weights)")
        if after.get("LSTM", 0):
            notes.append(f"{after['LSTM']} LSTM op(s) stay fp32")
        if after.get("GRU", 0):
            notes.append(
                f"{after['GRU']} GRU op(s) stay fp32: onnxruntime cannot quantize GRU "
                "(onnxruntime#9796)"
            )
        share = f"{frac:.1%}" if frac < 0.1 else f"{frac:.0%}"
        only_head = " (only Linear/Embedding weights)" if frac < 0.5 and not lstm_q else ""
        notes.append(f"int8 weights: {share} of weight elements{only_head}")
        return Artifact(
            variant="onnx-int8-dynamic", format="onnx", quantization=self.label,
            runtime=fp32.runtime, path=str(path), ops=after, notes=notes,
            quantized_fraction=frac, accepts_other_seq_len=fp32.accepts_other_seq_len,
            dynamic_batch=fp32.dynamic_batch,
            backend="onnxruntime.quantization.quantize_dynamic (QInt8 weights)",
        )


register_quantizer(OnnxDynamicInt8())
