"""Task metrics, degradation against a baseline, and agreement with reference outputs."""

from __future__ import annotations

import numpy as np

# metric -> True when higher is better
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "mae": False, "rmse": False}
PRIMARY = {"classify": "accuracy", "forecast": "mae"}


def predictions(outputs: np.ndarray) -> np.ndarray:
    """Class ids from logits (N, C); a single logit column means a binary sigmoid."""
    out = outputs.reshape(len(outputs), -1)
    if out.shape[1] == 1:
        return (out[:, 0] > 0).astype(np.int64)
    return out.argmax(axis=1)


def macro_f1(pred: np.ndarray, y: np.ndarray) -> float:
    scores = []
    for c in np.union1d(np.unique(y), np.unique(pred)):
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def compute_metrics(outputs: np.ndarray, y: np.ndarray, task: str) -> dict[str, float]:
    if task == "classify":
        pred = predictions(outputs)
        yy = y.reshape(-1).astype(np.int64)
        return {"accuracy": float(np.mean(pred == yy)), "macro_f1": macro_f1(pred, yy)}
    out = outputs.reshape(y.shape).astype(np.float64)
    err = out - y.astype(np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def degradation(baseline: float, value: float, metric: str) -> float:
    """How much worse ``value`` is than ``baseline`` (positive = worse), in metric units."""
    return baseline - value if HIGHER_IS_BETTER[metric] else value - baseline


def agreement(outputs: np.ndarray, reference: np.ndarray, task: str, y: np.ndarray) -> float:
    """Share of samples where the variant agrees with the fp32 reference.

    Classification: same predicted class. Forecasting: every predicted value within 1% of the
    target's standard deviation of the reference prediction.
    """
    if task == "classify":
        return float(np.mean(predictions(outputs) == predictions(reference)))
    tol = 0.01 * float(np.std(y)) or 1e-6
    diff = np.abs(outputs.reshape(len(outputs), -1) - reference.reshape(len(reference), -1))
    return float(np.mean(np.all(diff <= tol, axis=1)))
