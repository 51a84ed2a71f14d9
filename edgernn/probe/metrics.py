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


def degradation(baseline: float, value: float, metric: str,
                higher_is_better: bool | None = None) -> float:
    """How much worse ``value`` is than ``baseline`` (positive = worse), in metric units; the
    direction is the built-in metric's unless ``higher_is_better`` says it (a user's metric)."""
    higher = HIGHER_IS_BETTER[metric] if higher_is_better is None else higher_is_better
    return baseline - value if higher else value - baseline


AGREE_TOL = 0.01  # regression agreement: |variant - fp32| within this share of std(y)


def agreement_tolerance(y: np.ndarray) -> float:
    """The regression agreement tolerance: ``AGREE_TOL`` of the targets' standard deviation."""
    return AGREE_TOL * float(np.std(y)) or 1e-6


def agreement(outputs: np.ndarray, reference: np.ndarray, task: str, y: np.ndarray,
              threshold: float = 0.0) -> float:
    """How often the variant agrees with the fp32 reference.

    Classification: the share of predictions (samples, or steps) with the same class.
    Regression: the share of output values within ``agreement_tolerance(y)`` of fp32's.
    """
    if task == "classify":
        return float(np.mean(predictions(outputs, threshold) == predictions(reference, threshold)))
    diff = np.abs(outputs.reshape(-1).astype(np.float64) - reference.reshape(-1))
    return float(np.mean(diff <= agreement_tolerance(y)))


def shaped_like_targets(outputs: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """The judged outputs as a metric function sees them: regression values in ``y``'s shape
    ([N, T, *out] for an output per step); classifier scores as ``y``'s shape plus a class
    axis ([N, C], or [N, T, C] with a label per step)."""
    if task == "classify":
        return outputs.reshape(*y.shape, -1)
    return outputs.reshape(y.shape)


RETURN_LIMIT_MB = 64.0  # the most judged-output bytes (float32) a probe sends back


def pack_array(a: np.ndarray, limit_mb: float = RETURN_LIMIT_MB) -> dict[str, Any]:
    """A float32 array as JSON (shape + base64), refused above ``limit_mb`` MB."""
    a = np.ascontiguousarray(a, dtype="<f4")
    if a.nbytes > limit_mb * 1e6:
        raise ValueError(f"the judged outputs are {a.nbytes / 1e6:.1f} MB of float32, more than "
                         f"the {limit_mb:g} MB a probe sends back")
    return {"shape": list(a.shape), "float32": base64.b64encode(a.tobytes()).decode()}


def unpack_array(packed: dict[str, Any]) -> np.ndarray:
    """The array ``pack_array`` made."""
    raw = base64.b64decode(packed["float32"])
    return np.frombuffer(raw, dtype="<f4").reshape(packed["shape"])


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


def per_sample_values(values: np.ndarray, metric: str) -> dict[str, Any]:
    """A JSON-ready record of a metric function's value on each sample alone (float32, base64):
    ``select``'s paired test on rows judged by that metric."""
    v = np.asarray(values, dtype="<f4")
    return {"kind": "value", "metric": metric, "n": int(len(v)),
            "float32": base64.b64encode(v.tobytes()).decode()}
