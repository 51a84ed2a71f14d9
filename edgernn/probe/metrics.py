"""Task metrics, degradation against a baseline, and agreement with reference outputs."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

# metric -> True when higher is better
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "roc_auc": True, "mae": False,
                    "rmse": False}
PRIMARY = {"classify": "accuracy", "forecast": "mae"}


def predictions(outputs: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Class ids from scores (N, C); a single column is a binary score cut at ``threshold``
    (0 for a logit, 0.5 for a probability)."""
    out = outputs.reshape(len(outputs), -1)
    if out.shape[1] == 1:
        return (out[:, 0] > threshold).astype(np.int64)
    return out.argmax(axis=1)


def roc_auc(score: np.ndarray, y: np.ndarray) -> float | None:
    """Area under the ROC curve of a binary score (Mann-Whitney U, ties counted half);
    None when ``y`` holds one class only."""
    pos, neg = score[y == 1], score[y == 0]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    u = r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def macro_f1(pred: np.ndarray, y: np.ndarray) -> float:
    scores = []
    for c in np.union1d(np.unique(y), np.unique(pred)):
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def compute_metrics(outputs: np.ndarray, y: np.ndarray, task: str,
                    threshold: float = 0.0) -> dict[str, float]:
    """Accuracy and macro-F1 (and ROC-AUC for a binary score) or MAE and RMSE."""
    if task == "classify":
        pred = predictions(outputs, threshold)
        yy = y.reshape(-1).astype(np.int64)
        m = {"accuracy": float(np.mean(pred == yy)), "macro_f1": macro_f1(pred, yy)}
        out = outputs.reshape(len(outputs), -1)
        if set(np.unique(yy)) <= {0, 1} and out.shape[1] in (1, 2):
            auc = roc_auc(out[:, 0] if out.shape[1] == 1 else out[:, 1] - out[:, 0], yy)
            if auc is not None:
                m["roc_auc"] = auc
        return m
    out = outputs.reshape(y.shape).astype(np.float64)
    err = out - y.astype(np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def degradation(baseline: float, value: float, metric: str) -> float:
    """How much worse ``value`` is than ``baseline`` (positive = worse), in metric units."""
    return baseline - value if HIGHER_IS_BETTER[metric] else value - baseline


def agreement(outputs: np.ndarray, reference: np.ndarray, task: str, y: np.ndarray,
              threshold: float = 0.0) -> float:
    """Share of samples where the variant agrees with the fp32 reference.

    Classification: same predicted class. Forecasting: every predicted value within 1% of the
    target's standard deviation of the reference prediction.
    """
    if task == "classify":
        return float(np.mean(predictions(outputs, threshold) == predictions(reference, threshold)))
    tol = 0.01 * float(np.std(y)) or 1e-6
    diff = np.abs(outputs.reshape(len(outputs), -1) - reference.reshape(len(reference), -1))
    return float(np.mean(np.all(diff <= tol, axis=1)))


def per_sample(outputs: np.ndarray, y: np.ndarray, task: str,
               threshold: float = 0.0) -> np.ndarray:
    """Per-sample correctness (classification) or mean absolute error over the horizon
    (forecasting): their mean is the accuracy / the MAE that ``compute_metrics`` reports."""
    if task == "classify":
        return predictions(outputs, threshold) == y.reshape(-1).astype(np.int64)
    out = outputs.reshape(len(y), -1).astype(np.float64)
    return np.abs(out - y.reshape(len(y), -1).astype(np.float64)).mean(axis=1)


def per_sample_record(outputs: np.ndarray, y: np.ndarray, task: str,
                      threshold: float = 0.0) -> dict[str, Any]:
    """A JSON-ready per-sample record (numpy + stdlib only, so the probe can make it on a
    device): packed correctness bits, or float32 absolute errors, base64."""
    v = per_sample(outputs, y, task, threshold)
    if task == "classify":
        return {"kind": "correct", "n": int(len(v)),
                "bits": base64.b64encode(np.packbits(v.astype(np.uint8)).tobytes()).decode()}
    return {"kind": "abs_error", "n": int(len(v)),
            "float32": base64.b64encode(v.astype("<f4").tobytes()).decode()}
