"""Accuracy-aware int8 (``--max-drop D``): keep the most sensitive ops in float until the drop
fits, as the best compression toolkits do (NNCF, Intel Neural Compressor), by measurement.

The drop is measured with onnxruntime on this host, on the evaluation samples (labels: the
task metric's drop against the fp32 file) or, without labels, on the calibration inputs against
the fp32 file's own predictions (classification: the share of changed predictions;
forecasting: the mean absolute change).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.probe.metrics import PRIMARY, compute_metrics, degradation


@dataclass
class AccuracyBudget:
    """The largest accepted drop and the samples that measure it (sample axis first)."""

    max_drop: float
    x: np.ndarray
    y: np.ndarray | None  # labels; None: judged against the fp32 file's own outputs
    task: str
    batch_axis: int = 0
    source: str = "calibration inputs"

    def outputs(self, path: Path) -> np.ndarray:
        """The first output of an ONNX file on every sample, one call each (as deployed)."""
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
            outs.append(np.asarray(sess.run(None, {name: xi})[0]).reshape(1, -1))
        return np.concatenate(outs)

    def drop(self, reference: np.ndarray, got: np.ndarray) -> float:
        """How much worse ``got`` is than the fp32 ``reference`` outputs (positive = worse)."""
        if self.y is not None:
            metric = PRIMARY[self.task]
            base = compute_metrics(reference, self.y, self.task)[metric]
            return degradation(base, compute_metrics(got, self.y, self.task)[metric], metric)
        if self.task == "classify":
            from edgernn.probe.metrics import predictions

            return float(np.mean(predictions(got) != predictions(reference)))
        return float(np.mean(np.abs(got - reference)))

    def describe(self) -> str:
        what = (f"{PRIMARY[self.task]} drop on {len(self.x)} {self.source}" if self.y is not None
                else ("share of changed predictions" if self.task == "classify"
                      else "mean absolute change") + f" vs fp32 on {len(self.x)} {self.source}")
        return what


def greedy_float_ops(quantize: Any, candidates: list[tuple[str, str]], budget: AccuracyBudget,
                     reference: np.ndarray, work: Path,
                     on_step: Any = None) -> tuple[list[tuple[str, str]], float, dict[str, float]]:
    """Measure each weighted op's sensitivity (the drop with only it left in float), then keep
    the most sensitive in float, one more at a time, until the drop fits ``budget``.

    ``quantize(excluded_names, path)`` writes the int8 file with those nodes left float.
    Returns the float ops (name, op type), the drop reached and every op's sensitivity."""
    sens: dict[str, float] = {}
    for name, _op in candidates:
        p = work / "one.onnx"
        quantize([name], p)
        sens[name] = budget.drop(reference, budget.outputs(p))
    order = sorted(candidates, key=lambda c: sens[c[0]])  # lowest drop without it first
    kept: list[tuple[str, str]] = []
    reached = float("inf")
    for cand in order:
        kept.append(cand)
        p = work / "mixed.onnx"
        quantize([n for n, _ in kept], p)
        reached = budget.drop(reference, budget.outputs(p))
        if on_step:
            on_step(kept, reached)
        if reached <= budget.max_drop:
            break
    return kept, reached, sens
