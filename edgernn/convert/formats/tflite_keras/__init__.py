"""TFLite by rebuilding the model in tf_keras with the trained weights.

``tflite-keras``: every LSTM becomes the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op and every
GRU a ``WHILE`` loop (TFLite has no fused GRU); the sequence axis stays dynamic, the batch is
fixed (the converter fuses the LSTM and lowers the GRU loop only with a static batch).
``tflite-keras-unrolled``: every recurrent layer is unrolled over the example's sequence
length (``unroll=True``): no loop and no state variables, a dynamic batch, a fixed length.

Which layers to rebuild comes from a plan (``tflite_keras.plan``): edgernn's SequenceModel from
its config, any other model from its graph (``tflite_keras.graph``: TorchScript for scripted or
traced archives, torch.fx for eager modules) when that graph is a chain of supported layers
(Embedding, Linear, Conv1d, LSTM, GRU, LayerNorm, BatchNorm1d, activations, dropout, pooling
over time, transposes). Anything else is a skip: ``Unsupported("tflite-keras cannot rebuild
<op> at <file:line>")``. Token ids are int32 in the file.

The TensorFlow side (``tflite_keras.worker``) runs in a child process
(``tflite_common.run_child``): its int8 calibrator segfaults on WHILE-loop models, and a dead
child becomes an ExportError naming the signal. TensorFlow is never imported here.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.base import register_format
from edgernn.convert.formats.tflite_common import (
    ChildCrashed,
    ChildFailed,
    ChildSettings,
    fraction_of,
    op_census,
    run_child,
)
from edgernn.convert.formats.tflite_keras.plan import Plan, describe_plan, optimize, plan_sequence_model
from edgernn.errors import ExportError, Unsupported
from edgernn.model.loading import LoadedModel

INSTALL = "pip install 'edgernn[tflite-keras]'"
TIMEOUT_S = 900.0  # per conversion (TensorFlow start-up + convert + calibration)
TIMEOUT_ENV = "EDGERNN_TFLITE_KERAS_TIMEOUT"  # seconds, overrides TIMEOUT_S
FAULT_ENV = "EDGERNN_TFLITE_KERAS_FAULT"  # tests only: "segv" or "hang" in the converter child
CHILD = ChildSettings(TIMEOUT_ENV, TIMEOUT_S, FAULT_ENV,
                      {"TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": "-1"})
WORKER = "edgernn.convert.formats.tflite_keras.worker"
PARITY_ATOL = 1e-4  # relative to max(1, |reference|), as in edgernn.convert.exporting
MODE_TEXT = {
    "fp32": "fp32 conversion", "dynamic": "dynamic-range int8 quantization",
    "fp16": "float16 conversion", "int8": "full-int8 calibration and quantization",
    "int16x8": "int16x8 calibration and quantization",
}

__all__ = ["ConverterCrashed", "ConverterRejected", "TFLITE_KERAS", "TFLITE_KERAS_UNROLLED",
           "TFLiteKerasFormat", "build_plan", "describe_plan", "fraction_of", "missing_reason"]


class ConverterRejected(ExportError):
    """The TFLite converter raised an error (the message is its most specific line)."""


class ConverterCrashed(ExportError):
    """The converter subprocess died from a signal."""


def missing_reason() -> str | None:
    """None when tensorflow and tf_keras are importable, else a one-line reason."""
    missing = [m for m in ("tensorflow", "tf_keras") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return f"{' and '.join(missing)} {verb} not installed ({INSTALL})"


def build_plan(model: LoadedModel, unroll: bool) -> tuple[Plan, dict[str, np.ndarray]]:
    """The optimized plan and Keras-layout weights of ``model`` (Unsupported when its graph
    is not a chain of supported layers)."""
    from edgernn.models.sequence import SequenceModel

    if isinstance(model.module, SequenceModel) and model.config is not None:
        plan, weights = plan_sequence_model(model, unroll)
    else:
        from edgernn.convert.formats.tflite_keras.graph import plan_from_graph

        plan, weights = plan_from_graph(model, unroll)
    optimize(plan, weights)
    return plan, weights


def convert(plan: Plan, weights: dict[str, np.ndarray], out: Path, mode: str = "fp32",
            calib: np.ndarray | None = None, check: tuple[np.ndarray, np.ndarray] | None = None,
            timeout: float | None = None) -> dict[str, Any]:
    """Build and convert ``plan`` in a child process; return the worker's result dict.

    Raises ConverterCrashed (a signal), ConverterRejected (the converter raised) or
    ExportError (timeout, other failures), each one line."""
    what = f"TFLite {MODE_TEXT.get(mode, mode)}"
    data: dict[str, np.ndarray] = {}
    if calib is not None:
        data["calib"] = calib
    if check is not None:
        data["check_x"], data["check_y"] = check
    arrays = {"weights": weights, **({"data": data} if data else {})}
    job = {"plan": plan.to_json(), "mode": mode, "out": str(Path(out).resolve())}
    try:
        return run_child(WORKER, job, what, CHILD, arrays=arrays, timeout=timeout)
    except ChildCrashed as e:
        hint = ""
        if mode in ("int8", "int16x8") and not plan.unroll \
                and any(s.attrs["cell"] == "gru" for s in plan.rnn_steps()):
            hint = ("; the TF calibrator crashes on WHILE-loop (GRU) models: use "
                    "tflite-keras-unrolled for full-integer GRU")
        raise ConverterCrashed(f"{e}{hint}") from None
    except ChildFailed as e:
        if e.kind == "converter":
            raise ConverterRejected(str(e)) from None
        raise


class TFLiteKerasFormat:
    family = "tflite"
    suffix = ".tflite"
    runtime = "litert"

    def __init__(self, name: str, unroll: bool, timeout: float | None = None):
        self.name = name
        self.unroll = unroll
        self.timeout = timeout

    def available(self) -> str | None:
        return missing_reason()

    def export(self, model: LoadedModel, path: Path) -> Artifact:
        return self.convert(model, path, "fp32")[0]

    def convert(self, model: LoadedModel, path: Path, mode: str,
                calib: np.ndarray | None = None) -> tuple[Artifact, dict[str, Any]]:
        """Plan, convert with ``mode`` in a child process, verify what the file accepts.
        Returns the artifact and the worker's result (e.g. ``calib_samples``)."""
        import torch

        if len(model.sig.inputs) > 1:
            raise Unsupported(
                "tflite-keras rebuilds whole-sequence models with one input; a step model's "
                "state must be a model input and output, which the fused TFLite LSTM cannot "
                "give (it keeps state in variable tensors): tflite-litert exports the step")
        t0 = time.perf_counter()
        plan, weights = build_plan(model, self.unroll)
        x = model.example_input(batch=1)
        with torch.no_grad():
            ref = _only(model.module(x)).numpy()
        path.unlink(missing_ok=True)
        res = convert(plan, weights, path, mode, calib, (x.numpy(), ref), self.timeout)
        seconds = time.perf_counter() - t0
        if not path.exists():
            raise ExportError(f"TFLite {MODE_TEXT.get(mode, mode)} wrote no file")
        ops = op_census(path)
        notes = describe_plan(plan) + self._result_notes(plan, res, ops, ref)
        accepts_seq, dyn_batch, vnotes = self._verify(model, path, plan, strict=(mode == "fp32"))
        art = Artifact(
            variant=f"{self.name}-fp32", format=self.family, quantization="fp32", runtime=self.runtime,
            path=str(path), export_seconds=seconds, accepts_other_seq_len=accepts_seq,
            dynamic_batch=dyn_batch, ops=ops, notes=notes + vnotes,
            backend=(f"tf_keras {res.get('tf_keras', '?')} weight transfer + tf.lite.TFLiteConverter "
                     f"(TensorFlow {res.get('tensorflow', '?')}){', unrolled' if self.unroll else ''}"),
        )
        return art, res

    def _result_notes(self, plan: Plan, res: dict[str, Any], ops: dict[str, int],
                      ref: np.ndarray) -> list[str]:
        notes = []
        fused = ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)
        n_lstm = sum(2 if s.attrs["bidirectional"] else 1
                     for s in plan.rnn_steps() if s.attrs["cell"] == "lstm")
        if not self.unroll and n_lstm and fused < n_lstm:
            notes.append(f"only {fused} of {n_lstm} LSTM direction(s) were fused")
        if res.get("unshared_state_inputs"):
            notes.append(
                f"converter bug worked around: {res['unshared_state_inputs']} op input(s) read a fused "
                "LSTM's state variable (TF merged it with an equal zero initial state, e.g. of a "
                "following GRU); they now read their own zero tensor")
        kdiff = res.get("keras_max_abs_diff")
        if kdiff is not None and kdiff > PARITY_ATOL * max(1.0, float(np.max(np.abs(ref)))):
            notes.append(f"the Keras rebuild itself differs from PyTorch by {kdiff:.3g} "
                         "(a weight-transfer problem, not the converter)")
        if res.get("dynamic_quantizer") == "legacy":
            notes.append("used the legacy dynamic-range quantizer (experimental_new_dynamic_range_"
                         "quantizer=False): the MLIR one leaves a fused LSTM float when any of its "
                         "weight tensors has < 1024 elements")
        return notes

    def _verify(self, model: LoadedModel, path: Path, plan: Plan,
                strict: bool) -> tuple[bool, bool, list[str]]:
        """Run the file at other sequence lengths / batch 2 and claim only what works.

        ``strict``: also require fp32 parity with PyTorch there (quantized files: runs + finite)."""
        import torch

        from edgernn.probe import runtimes

        notes: list[str] = []
        spec = model.spec
        seq = plan.seq_len

        def works(**sizes: int) -> tuple[bool, str]:
            try:
                sess = runtimes.load("litert", str(path), threads=1)
                xx = model.example_input(**sizes)
                with torch.no_grad():
                    ref = _only(model.module(xx)).numpy()
                out = np.asarray(sess.run(xx.numpy()))
            except Exception as e:
                return False, _last_line(str(e)) or type(e).__name__
            if out.shape != ref.shape:
                return False, f"output shape {list(out.shape)}, PyTorch {list(ref.shape)}"
            if not np.all(np.isfinite(out)):
                return False, "non-finite output"
            diff = float(np.max(np.abs(out - ref)))
            if strict and diff > PARITY_ATOL * max(1.0, float(np.max(np.abs(ref)))):
                return False, f"output differs from PyTorch by {diff:.3g}"
            return True, ""

        ok, why = works(batch=1, seq=seq) if spec.seq_axis is not None else works(batch=1)
        if not ok:  # exporting's parity check reports this; do not blame the other shapes
            notes.append(f"the file does not match PyTorch at the example shape ({why})")
            return False, False, notes
        accepts = False
        if spec.seq_axis is not None and plan.seq is None:
            others = [max(2, seq // 2 + 1), seq + 5]
            bad = [(s, why) for s in others for ok, why in [works(batch=1, seq=s)] if not ok]
            accepts = not bad
            if accepts:
                notes.append(f"sequence axis dynamic (verified at seq {', '.join(map(str, others))})")
            else:
                notes.append(f"sequence length fixed: seq {bad[0][0]} failed ({bad[0][1]})")
        dyn = False
        if spec.axes[spec.batch_axis].name and plan.batch is None:
            ok, why = works(batch=2)
            dyn = ok
            notes.append("batch axis dynamic (verified at batch 2)" if ok else
                         f"batch fixed: batch 2 failed ({why})")
        return accepts, dyn, notes


def _only(out: Any) -> Any:
    """The model's output tensor (plans are single-output; a 1-tuple is unwrapped)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _last_line(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


TFLITE_KERAS = register_format(TFLiteKerasFormat("tflite-keras", unroll=False))
TFLITE_KERAS_UNROLLED = register_format(TFLiteKerasFormat("tflite-keras-unrolled", unroll=True))
