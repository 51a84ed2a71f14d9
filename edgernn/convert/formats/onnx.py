"""ONNX via the TorchScript exporter (dynamo=False, opset 17): native LSTM/GRU ops.

Inputs and outputs keep the signature's names; named axes (``batch``, ``seq``) of inputs and
outputs (see ``edgernn.model.signature``) become dynamic, and only those.
"""

from __future__ import annotations

import io
import time
import warnings
from collections import Counter
from contextlib import redirect_stderr
from pathlib import Path

import torch

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.base import register_format
from edgernn.errors import ExportError, Unsupported
from edgernn.model.loading import LoadedModel, projection_lstm

OPSET = 17


def op_census(path: Path) -> dict[str, int]:
    """Count of each operator type in an ONNX file, sub-graphs included (constants left out)."""
    import onnx

    from edgernn.convert.formats.onnx_weights import graphs

    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(Counter(n.op_type for g in graphs(graph) for n in g.node if n.op_type != "Constant"))


class OnnxFormat:
    name = "onnx"
    family = "onnx"
    suffix = ".onnx"
    runtime = "onnxruntime"

    def available(self) -> str | None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as e:
            return f"{e.name} is not installed (pip install onnx onnxruntime)"
        return None

    def export(self, model: LoadedModel, path: Path) -> Artifact:
        spec, sig = model.spec, model.sig
        proj = projection_lstm(model.module)
        if proj:
            raise Unsupported(f"{proj}: ONNX's LSTM has no projection (tflite-fused exports it)")
        example = tuple(model.example_inputs())
        t0 = time.perf_counter()
        try:
            dynamic = {t.name: t.dynamic_axes for t in [*sig.inputs, *sig.outputs]
                       if t.dynamic_axes}
            with warnings.catch_warnings(), redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    private_copy(model.module), example, str(path), dynamo=False,
                    opset_version=OPSET, input_names=[t.name for t in sig.inputs],
                    output_names=[t.name for t in sig.outputs], dynamic_axes=dynamic,
                )
        except Exception as e:
            raise ExportError(f"ONNX export failed: {describe_export_failure(e)}") from None
        art = Artifact(
            variant="onnx-fp32", format="onnx", quantization="fp32", runtime=self.runtime,
            path=str(path), export_seconds=time.perf_counter() - t0,
            accepts_other_seq_len=spec.seq_axis is not None,
            dynamic_batch=spec.axis_index("batch") is not None,
            backend=f"torch.onnx (TorchScript exporter, opset {OPSET})",
        )
        art.ops = op_census(path)
        return art


def private_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a ScriptModule for the exporter: the TorchScript exporter inlines and rewrites
    a ScriptModule's graphs in place, which would hide its nn.LSTM/GRU submodules from every
    later plug-in (tflite-keras then saw the inlined GRU code and skipped the model)."""
    if not isinstance(module, torch.jit.ScriptModule):
        return module
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    buf.seek(0)
    return torch.jit.load(buf, map_location="cpu").eval()


def describe_export_failure(e: BaseException) -> str:
    """Name the construct behind an exporter failure where it can be recognised."""
    text = f"{type(e).__name__}: {e}"
    low = text.lower()
    if "packedsequence" in low or "pack_padded" in low or "packed" in low:
        return "PackedSequence input is not supported; pass padded tensors to the RNN"
    if "proj_size" in low:
        return "LSTM proj_size is not supported"
    return text.splitlines()[0][:300]


register_format(OnnxFormat())
