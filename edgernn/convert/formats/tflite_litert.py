"""TFLite via litert-torch (no TensorFlow): any model torch.export can trace.

The converter unrolls LSTM/GRU into one set of ops per time step, so the file has a fixed
input shape (batch 1, the example sequence length). 64-bit tensors are downcast: int64 token
inputs become int32 (the host runtime adapter casts token ids to the file's dtype).

The conversion runs in a child process: the parent traces the model with ``torch.export``
(Python errors surface here with their message), saves the ExportedProgram, and the child
loads it and runs litert-torch's MLIR converter. A crash (segfault, abort) or hang in the
converter becomes a one-line ExportError naming the signal or the timeout. The quantizers in
``edgernn.convert.quantize.tflite_litert`` reuse :func:`run_child` the same way
(both TFLite backends share ``edgernn.convert.formats.tflite_common``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats import tflite_common as common
from edgernn.convert.formats.base import register_format
from edgernn.convert.formats.tflite_common import ChildSettings, io_details, one_line, op_census
from edgernn.errors import ExportError
from edgernn.model.loading import LoadedModel

INSTALL = "pip install 'edgernn[tflite]'"
TIMEOUT_ENV = "EDGERNN_LITERT_TIMEOUT"  # seconds per child (conversion or quantization)
DEFAULT_TIMEOUT = 900.0
# test hook: the child calls os.abort() ("abort"), raises SIGSEGV ("segv") or sleeps ("hang")
# before doing its job, so tests exercise the real subprocess path
FAULT_ENV = "EDGERNN_LITERT_FAULT"

# ops that mean the recurrence was NOT unrolled (a loop or a fused sequence kernel)
LOOP_OPS = {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
            "BIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_RNN"}

CHILD = ChildSettings(TIMEOUT_ENV, DEFAULT_TIMEOUT, FAULT_ENV)


def run_child(module: str, job: dict[str, Any], what: str, timeout: float | None = None) -> dict[str, Any]:
    """``tflite_common.run_child`` with this backend's timeout and fault settings."""
    return common.run_child(module, job, what, CHILD, timeout=timeout)


_PACKING = {"pack_padded_sequence", "pad_packed_sequence", "pack_sequence", "PackedSequence"}


def _describe(e: BaseException) -> str:
    """One line for a torch.export failure, naming PackedSequence when that is the cause."""
    from torch.nn.utils.rnn import PackedSequence

    packed = "packed" in str(e).lower()
    tb = e.__traceback__
    while tb is not None and not packed:  # a frame that was handling a PackedSequence
        frame = tb.tb_frame
        packed = frame.f_code.co_name in _PACKING or any(
            isinstance(v, PackedSequence) for v in list(frame.f_locals.values()))
        tb = tb.tb_next
    if packed:
        return "PackedSequence is not supported; pass padded tensors to the RNN"
    return one_line(e)


def _trace(module: Any, example: tuple[Any, ...], scripted: bool) -> Any:
    """The module as an ExportedProgram (TorchScript through
    ``edgernn.convert.formats.torchscript_program``)."""
    import torch

    # torch.export logs its shape specialisations to stderr: expected here (fixed shapes)
    loggers = [logging.getLogger(n) for n in ("torch._export", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        if scripted:
            from edgernn.convert.formats.torchscript_program import exported_program

            return exported_program(module, example)
        return torch.export.export(module, example, strict=False)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _child_main(job: dict[str, Any]) -> dict[str, Any]:
    """Child side of the conversion: ExportedProgram file -> .tflite."""
    import torch

    torch.set_num_threads(max(1, int(job.get("threads", 1))))
    import litert_torch

    ep = torch.export.load(job["program"])
    with np.load(job["example"]) as f:
        example = tuple(torch.from_numpy(f[k]) for k in sorted(f.files, key=lambda k: int(k[1:])))
    t0 = time.perf_counter()
    edge = litert_torch.convert(ep.module(), example)
    seconds = time.perf_counter() - t0
    edge.export(job["out"])
    from importlib.metadata import version

    return {"convert_seconds": seconds, "litert_torch": version("litert-torch"),
            **io_details(job["out"])}


# --------------------------------------------------------------------------- the plug-in


def _missing(*modules: str) -> str | None:
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def litert_missing() -> str | None:
    """None when litert-torch and ai-edge-litert import, else which is missing and its install."""
    missing = _missing("litert_torch", "ai_edge_litert")
    if missing:
        dist = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert"}[missing]
        return f"{dist} is not installed ({INSTALL})"
    return None


class TfliteLitertFormat:
    name = "tflite-litert"
    family = "tflite"
    suffix = ".tflite"
    runtime = "litert"

    def available(self) -> str | None:
        return litert_missing()

    def export(self, model: LoadedModel, path: Path) -> Artifact:
        import torch

        spec = model.spec
        example = tuple(model.example_inputs(batch=1))
        shape = list(example[0].shape)
        seq = shape[spec.seq_axis] if spec.seq_axis is not None else None
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="edgernn-export-") as tmp:
            program, ex_file = Path(tmp) / "model.pt2", Path(tmp) / "example.npz"
            scripted = isinstance(model.module, torch.jit.ScriptModule)
            try:
                with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                    warnings.simplefilter("ignore")
                    ep = _trace(model.module, example, scripted)
                    torch.export.save(ep, str(program))
            except Exception as e:
                if scripted:
                    raise ExportError(
                        f"litert-torch cannot take this TorchScript archive ({one_line(e)}); "
                        "pass the eager model (a trusted pickle) instead"
                    ) from None
                raise ExportError(f"litert-torch needs torch.export, which failed: {_describe(e)}") from None
            np.savez(ex_file, **{f"a{k}": t.numpy() for k, t in enumerate(example)})
            path.unlink(missing_ok=True)
            res = run_child(__name__, {
                "program": str(program), "example": str(ex_file), "out": str(path),
            }, "litert-torch conversion")
        if not path.exists():
            raise ExportError("litert-torch conversion wrote no file")
        ops = op_census(path)
        notes = []
        loops = sorted(LOOP_OPS & set(ops))
        if loops:
            notes.append(f"recurrence kept as {', '.join(loops)}; input shape fixed at {shape}")
        elif seq is None:
            notes.append(f"fixed input shape {shape}: other shapes need a re-export")
        else:
            notes.append(
                f"unrolled: the recurrence is {seq} copies of its step ops "
                f"({sum(ops.values())} ops); fixed input shape {shape} (batch 1, sequence length "
                f"{seq}): other lengths or batch sizes need a re-export"
            )
        if spec.dtype == "int64" and res.get("input_dtype") == "int32":
            notes.append("int64 token input became int32 (litert-torch downcasts 64-bit tensors); "
                         "feed int32 ids on the device")
        elif res.get("input_dtype") and res["input_dtype"] != spec.dtype:
            notes.append(f"input dtype {spec.dtype} became {res['input_dtype']}")
        if model.sig.is_streaming:
            states = ", ".join(f"{o} -> {i}" for i, o in model.sig.state.items())
            notes.append(f"external state ({states}): state tensors are inputs and outputs, no "
                         "variable tensors, nothing to reset between streams")
        if scripted:
            notes.append("TorchScript archive frozen, specialised to the example shapes and turned "
                         "into an ExportedProgram (torch's TS2EPConverter) before litert-torch; "
                         "parity checked")
        return Artifact(
            variant=f"{self.name}-fp32", format=self.family, quantization="fp32",
            runtime=self.runtime, path=str(path), export_seconds=time.perf_counter() - t0,
            accepts_other_seq_len=False, dynamic_batch=False, notes=notes, ops=ops,
            backend=f"litert-torch {res.get('litert_torch', '?')} ("
                    + ("TorchScript -> specialised ExportedProgram" if scripted else "torch.export")
                    + ", unrolled)",
        )


register_format(TfliteLitertFormat())
