"""ONNX via the TorchScript exporter (dynamo=False, opset 17): native LSTM/GRU ops with
dynamic batch and sequence axes."""

from __future__ import annotations

import io
import time
import warnings
from collections import Counter
from contextlib import redirect_stderr
from pathlib import Path

import torch

from edgernn.artifact import Artifact
from edgernn.errors import ExportError
from edgernn.formats.base import register_format
from edgernn.loading import LoadedModel

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "output"


def op_census(path: Path) -> dict[str, int]:
    """Count of each operator type in an ONNX file (constants left out)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(Counter(n.op_type for n in graph.node if n.op_type != "Constant"))


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
        spec = model.spec
        dyn = {i: n for i, n in spec.dynamic_axes.items()}
        example = model.example_input()
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(), redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model.module, (example,), str(path), dynamo=False, opset_version=OPSET,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: dyn, OUTPUT_NAME: {0: "batch"}},
                )
        except Exception as e:
            raise ExportError(f"ONNX export failed: {describe_export_failure(e)}") from None
        art = Artifact(
            variant="onnx-fp32", format="onnx", quantization="fp32", runtime=self.runtime,
            path=str(path), export_seconds=time.perf_counter() - t0,
            accepts_other_seq_len=spec.seq_axis is not None, dynamic_batch=True,
            backend=f"torch.onnx (TorchScript exporter, opset {OPSET})",
        )
        art.ops = op_census(path)
        return art


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
