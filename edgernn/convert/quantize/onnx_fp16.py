"""ONNX float16 storage (onnxconverter-common, fp32 inputs/outputs kept).

The converter rewrites ``Constant`` node tensors as well as initializers (measured on a scripted
Conv1d+LSTM export: all of its 82,944 Constant-held LSTM weight elements became float16), so no
pre-processing is needed here; the share is counted over both.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.onnx import op_census
from edgernn.convert.quantize.base import NotApplicable, register_quantizer
from edgernn.errors import EdgeRNNError
from edgernn.model.loading import LoadedModel


class OnnxFloat16:
    format = "onnx"
    mode = "fp16"
    label = "fp16"

    def available(self) -> str | None:
        try:
            import onnxconverter_common  # noqa: F401
        except ImportError:
            return "onnxconverter-common is not installed (pip install onnxconverter-common)"
        return None

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        import onnx
        from onnxconverter_common import float16

        from edgernn.convert.formats.onnx_weights import share, weight_census

        logging.getLogger().setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m16 = float16.convert_float_to_float16(onnx.load(fp32.path), keep_io_types=True)
        census = weight_census(m16)
        if census.float16 == 0:
            raise NotApplicable("nothing to quantize: the graph holds no float32 weights")
        onnx.save(m16, str(path))
        opens_in_a_child(path)
        return Artifact(
            variant="onnx-fp16", format="onnx", quantization=self.label, runtime=fp32.runtime,
            path=str(path), ops=op_census(path),
            notes=[f"float16 weights: {share(census.float16_fraction)} of {census.total} weight "
                   "elements (initializers and Constant tensors)",
                   "onnxruntime's CPU provider computes in float32 where it has no fp16 kernel "
                   "(a storage saving, not a speed-up)"],
            quantized_fraction=None, accepts_other_seq_len=fp32.accepts_other_seq_len,
            dynamic_batch=fp32.dynamic_batch,
            backend="onnxconverter_common.float16 (keep_io_types)",
        )


def opens_in_a_child(path: Path) -> None:
    """Create an onnxruntime session for ``path`` in a child process first: onnxruntime 1.32
    dies with SIGSEGV building the session of some fp16 graphs (an LSTM's all-step output into
    a Linear on a 3-D tensor, at the default optimisation level), which would take the whole
    export down with it. Raises a one-line EdgeRNNError naming the signal instead."""
    from edgernn.isolation import python_argv, signal_name

    code = ("import sys, onnxruntime as o; "
            "o.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])")
    try:
        r = subprocess.run([*python_argv(code=code), str(path)], capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EdgeRNNError("onnxruntime did not open the fp16 file within 300 s") from None
    if r.returncode < 0:
        path.unlink(missing_ok=True)
        raise EdgeRNNError(f"onnxruntime crashed ({signal_name(r.returncode)}) creating a session "
                           "for the fp16 file (an onnxruntime fault on this graph); fp16 left out")
    if r.returncode:
        lines = (r.stderr or "").strip().splitlines() or ["no message"]
        path.unlink(missing_ok=True)
        raise EdgeRNNError(f"onnxruntime cannot open the fp16 file: {lines[-1][:200]}")


register_quantizer(OnnxFloat16())
