"""Built-in metric functions for ``--metric-fn NAME``: ``fn(y_true, y_pred[, arrays]) -> float``
over the whole evaluation set, numpy only, each with its ``higher_is_better``.

``y_pred`` is the judged output as ``edgernn.probe.metrics.shaped_like_targets`` shapes it:
values in ``y``'s shape ([N, T, *out] for an output per step), classifier scores with a class
axis last. Parameters after the first two receive the evaluation file's arrays of that name
(``snr_gain`` takes ``clean`` and ``noisy``: magnitudes [N, T, F] like the mask)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgernn.probe.metrics import macro_f1

EPS = 1e-12


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error over every value."""
    return float(np.mean(np.abs(y_pred.astype(np.float64) - y_true)))


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean squared error over every value."""
    return float(np.mean((y_pred.astype(np.float64) - y_true) ** 2))


def frame_classes(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Predicted class per label: argmax over the class axis; a single score (a class axis
    of 1, or no class axis) is cut at 0.5 when every score lies in [0, 1], else at 0."""
    if y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] > 1:
        return y_pred.argmax(axis=-1)
    score = y_pred.reshape(y_true.shape)
    cut = 0.5 if float(score.min()) >= 0.0 and float(score.max()) <= 1.0 else 0.0
    return (score > cut).astype(np.int64)


def frame_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of labels (samples or frames) predicted right."""
    return float(np.mean(frame_classes(y_true, y_pred) == y_true.astype(np.int64)))


def frame_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over every labelled frame."""
    return macro_f1(frame_classes(y_true, y_pred).reshape(-1), y_true.astype(np.int64).reshape(-1))


def snr_db(clean: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-sample SNR (dB) of ``estimate`` against ``clean``: 10 log10(sum clean^2 /
    sum (estimate - clean)^2) over each sample's values."""
    c = clean.reshape(len(clean), -1).astype(np.float64)
    e = estimate.reshape(len(estimate), -1).astype(np.float64)
    return 10 * np.log10((np.sum(c**2, axis=1) + EPS) / (np.sum((e - c) ** 2, axis=1) + EPS))


def snr_gain(y_true: np.ndarray, y_pred: np.ndarray, clean: np.ndarray,
             noisy: np.ndarray) -> float:
    """SNR improvement of a mask (dB, mean over samples): the SNR of ``y_pred * noisy`` minus
    that of ``noisy``, both against ``clean`` (magnitudes, each [N, *y_pred's sample shape])."""
    est = y_pred.astype(np.float64) * noisy.reshape(y_pred.shape)
    return float(np.mean(snr_db(clean, est) - snr_db(clean, noisy)))


for _fn, _higher in ((mae, False), (mse, False), (frame_accuracy, True), (frame_f1, True),
                     (snr_gain, True)):
    _fn.higher_is_better = _higher  # type: ignore[attr-defined]

BUILTINS: dict[str, Callable[..., float]] = {f.__name__: f for f in (
    mae, mse, frame_accuracy, frame_f1, snr_gain)}
