"""ONNX int8 dynamic quantization (onnxruntime ``quant_pre_process`` + ``quantize_dynamic``).

``quantize_dynamic`` only sees weights stored as initializers; the TorchScript exporter keeps a
scripted model's LSTM weights in ``Constant`` nodes, which it would skip without a word
(onnxruntime#18671). ``quant_pre_process`` folds them into initializers first, and sub-graphs
(If/Loop bodies) are quantized too. LSTM becomes DynamicQuantizeLSTM, Conv ConvInteger,
MatMul/Gemm MatMulInteger, Embedding tables int8; onnxruntime has no quantized GRU
(onnxruntime#9796). The notes say per op type what runs in int8 and why the rest does not.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from edgernn.artifact import Artifact
from edgernn.formats.onnx import op_census
from edgernn.loading import LoadedModel
from edgernn.quantize.base import NotApplicable, register_quantizer


def weight_fraction_int8(path: Path) -> float:
    """Share of weight elements (initializers and Constant tensors) stored as 8-bit integers."""
    from edgernn.formats.onnx_weights import weight_census

    return weight_census(path).int8_fraction


def pre_process(src: Path, dst: Path) -> tuple[Path, str | None]:
    """Run onnxruntime's ``quant_pre_process``; return the file to quantize and a note on failure."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(src, dst, skip_symbolic_shape=True)
    except Exception as e:
        line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return src, (f"onnxruntime quant_pre_process failed ({line}); weights held in Constant "
                     "nodes, if any, stay fp32")
    return dst, None


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
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from edgernn.formats.onnx_weights import constant_node_weights, share, weight_census
        from edgernn.quantize.onnx_ops import mark_weighted_nodes, read_fates, summarize

        logging.getLogger().setLevel(logging.ERROR)
        notes: list[str] = []
        held = constant_node_weights(fp32.path)
        with tempfile.TemporaryDirectory(prefix="edgernn-q-") as tmp:
            src, failed = pre_process(Path(fp32.path), Path(tmp) / "pre.onnx")
            if failed:
                notes.append(failed)
            elif held:
                notes.append(f"{held} weight tensor(s) held in Constant nodes folded into "
                             "initializers first (onnxruntime quant_pre_process)")
            m = onnx.load(str(src))
        nodes = mark_weighted_nodes(m)
        quantize_dynamic(m, str(path), weight_type=QuantType.QInt8,
                         extra_options={"EnableSubgraph": True})
        q = onnx.load(str(path))
        summary = summarize(read_fates(q, nodes))
        onnx.save(q, str(path))
        census = weight_census(q)
        if census.int8 == 0:
            path.unlink(missing_ok=True)
            raise NotApplicable(f"nothing to quantize: {summary or 'the graph holds no weights'}")
        frac = census.int8_fraction
        if summary:
            notes.insert(0, summary)
        notes.append(f"int8 weights: {share(frac)} of {census.total} weight elements "
                     "(initializers and Constant tensors)")
        return Artifact(
            variant="onnx-int8-dynamic", format="onnx", quantization=self.label,
            runtime=fp32.runtime, path=str(path), ops=op_census(path), notes=notes,
            quantized_fraction=frac, accepts_other_seq_len=fp32.accepts_other_seq_len,
            dynamic_batch=fp32.dynamic_batch,
            backend="onnxruntime.quantization quant_pre_process + quantize_dynamic "
                    "(QInt8 weights, sub-graphs included)",
        )


register_quantizer(OnnxDynamicInt8())
