"""Accuracy-aware int8 (``--max-drop D``): keep the most sensitive ops in float until the drop
fits, as the best compression toolkits do (NNCF, Intel Neural Compressor), by measurement.

The drop is measured on this host (ONNX files with onnxruntime, .tflite files with LiteRT's
interpreter), one sample per call as deployed, on the evaluation samples (labels: the
task metric's drop against the fp32 file) or, without labels, on the calibration inputs against
the fp32 file's own predictions (classification: the share of changed predictions;
forecasting: the mean absolute change).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.errors import EdgeRNNError
from edgernn.probe.metrics import PRIMARY, compute_metrics, degradation


def is_tflite(path: Path) -> bool:
    """A .tflite flatbuffer (file identifier ``TFL3`` at bytes 4-8), whatever its name."""
    with open(path, "rb") as f:
        return f.read(8)[4:8] == b"TFL3"


@dataclass
class AccuracyBudget:
    """The largest accepted drop and the samples that measure it (sample axis first)."""

    max_drop: float
    x: np.ndarray
    y: np.ndarray | None  # labels; None: judged against the fp32 file's own outputs
    task: str
    batch_axis: int = 0
    source: str = "calibration inputs"
    output: int = 0  # the output the labels judge (by index, in the model's order)
    judge: Any = None  # a user's metric (``metrics.user.HostJudge``); None: the task's

    def to_request(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The budget as JSON and arrays, for a process that rebuilds it (``from_request``):
        a user's metric function travels as its spec and is loaded again there."""
        req: dict[str, Any] = {"max_drop": self.max_drop, "task": self.task,
                               "batch_axis": self.batch_axis, "source": self.source,
                               "output": self.output}
        arrays = {"budget_x": self.x, **({"budget_y": self.y} if self.y is not None else {})}
        if self.judge is not None:
            m = self.judge.metric
            req["metric_fn"] = {"spec": m.source if m.source != "builtin" else m.name,
                                "higher_is_better": m.higher_is_better}
            arrays |= {f"budget_fn_{k}": a for k, a in self.judge.arrays.items()}
        return req, arrays

    @classmethod
    def from_request(cls, req: dict[str, Any], arrays: dict[str, np.ndarray]) -> AccuracyBudget:
        """The budget ``to_request`` described."""
        judge = None
        y = arrays.get("budget_y")
        if req.get("metric_fn") and y is not None:
            from edgernn.metrics.user import HostJudge, load_metric_fn

            fn = req["metric_fn"]
            metric = load_metric_fn(fn["spec"], fn["higher_is_better"])
            judge = HostJudge(metric, y, {p: arrays[f"budget_fn_{p}"] for p in metric.params})
        return cls(req["max_drop"], arrays["budget_x"], y, req["task"], req["batch_axis"],
                   req["source"], int(req.get("output") or 0), judge)

    def _first(self, outs: list[np.ndarray]) -> np.ndarray:
        return np.asarray(outs[self.output]).reshape(1, -1)

    def outputs(self, path: Path) -> np.ndarray:
        """The first output of an ONNX or .tflite file on every sample, one call each (as
        deployed); the kind is read from the file's bytes, not its name."""
        if is_tflite(path):
            return self._tflite_outputs(path)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        outs = []
        for i in range(len(self.x)):
            xi = self.x[i:i + 1]
            if self.batch_axis:
                xi = np.moveaxis(xi, 0, self.batch_axis)
            outs.append(self._first(sess.run(None, {name: xi})))
        return np.concatenate(outs)

    def _tflite_outputs(self, path: Path) -> np.ndarray:
        """LiteRT's interpreter (1 thread) at the file's fixed input shape, cast to the file's
        input dtype (integer inputs quantized, integer outputs dequantized by the runtime
        adapter edgernn's bench uses)."""
        from edgernn.probe import runtimes

        sess = runtimes.load("litert", str(path), threads=1)
        want = list((sess.details or {}).get("input_shape") or [])
        outs = []
        for i in range(len(self.x)):
            xi = self.x[i:i + 1]
            if self.batch_axis:
                xi = np.moveaxis(xi, 0, self.batch_axis)
            if want and list(xi.shape) != want:
                raise EdgeRNNError(
                    f"{self.source} have shape {list(self.x.shape)} (samples first), but the "
                    f".tflite file's input is fixed at {want}: pass samples of that shape")
            outs.append(self._first(sess.outputs(xi)) if self.output else
                        np.asarray(sess.run(xi)).reshape(1, -1))
        return np.concatenate(outs)

    def drop(self, reference: np.ndarray, got: np.ndarray) -> float:
        """How much worse ``got`` is than the fp32 ``reference`` outputs (positive = worse)."""
        if self.y is not None and self.judge is not None:  # the user's metric function
            from edgernn.probe.metrics import shaped_like_targets

            m = self.judge.metric  # bound to these samples: its arrays are theirs

            def value(out: np.ndarray) -> float:
                return m.score(self.y, shaped_like_targets(out, self.y, self.task),
                               self.judge.arrays)

            return degradation(value(reference), value(got), m.name, m.higher_is_better)
        if self.y is not None:
            metric = PRIMARY[self.task]
            base = compute_metrics(reference, self.y, self.task)[metric]
            return degradation(base, compute_metrics(got, self.y, self.task)[metric], metric)
        if self.task == "classify":
            from edgernn.probe.metrics import predictions

            return float(np.mean(predictions(got) != predictions(reference)))
        return float(np.mean(np.abs(got - reference)))

    def describe(self) -> str:
        name = self.judge.metric.name if self.judge is not None else PRIMARY[self.task]
        what = (f"{name} drop on {len(self.x)} {self.source}" if self.y is not None
                else ("share of changed predictions" if self.task == "classify"
                      else "mean absolute change") + f" vs fp32 on {len(self.x)} {self.source}")
        return what


def needs_budget(model: Any, budget: AccuracyBudget | None) -> None:
    """Raise NotApplicable when an accuracy-aware quantizer has nothing to work with."""
    from edgernn.convert.quantize.base import NotApplicable

    if budget is None:
        raise NotApplicable("accuracy-aware int8 needs --max-drop")
    if len(model.sig.inputs) > 1:
        raise NotApplicable("accuracy-aware int8 of a model with several inputs is not "
                            "supported yet")


def greedy_float_ops(quantize: Any, candidates: list[tuple[str, str]], budget: AccuracyBudget,
                     reference: np.ndarray, work: Path,
                     on_step: Any = None, suffix: str = ".onnx"
                     ) -> tuple[list[tuple[str, str]], float, dict[str, float]]:
    """Measure each weighted op's sensitivity (the drop with only it left in float), then keep
    the most sensitive in float, one more at a time, until the drop fits ``budget``.

    ``quantize(excluded_names, path)`` writes the int8 file with those nodes left float (files
    named ``*<suffix>``).
    Returns the float ops (name, op type), the drop reached and every op's sensitivity."""
    sens: dict[str, float] = {}
    for name, _op in candidates:
        p = work / f"one{suffix}"
        quantize([name], p)
        sens[name] = budget.drop(reference, budget.outputs(p))
    order = sorted(candidates, key=lambda c: sens[c[0]])  # lowest drop without it first
    kept: list[tuple[str, str]] = []
    reached = float("inf")
    for cand in order:
        kept.append(cand)
        p = work / f"mixed{suffix}"
        quantize([n for n, _ in kept], p)
        reached = budget.drop(reference, budget.outputs(p))
        if on_step:
            on_step(kept, reached)
        if reached <= budget.max_drop:
            break
    return kept, reached, sens
