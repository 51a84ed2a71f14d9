"""One calibration policy for every full-int8 quantizer: which inputs, how many, said honestly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.data.evalfile import check_fits, load_eval
from edgernn.model.spec import InputSpec

SAMPLES = 200  # calibration samples handed to a quantizer (it must use exactly these)


def spread(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over n samples: time-ordered data is covered end to end
    (the first k samples of a season-ordered set calibrate worse, measured)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def calibration_inputs(
    spec: InputSpec, path: Path | None, fallback: np.ndarray | None, k: int = SAMPLES,
) -> tuple[np.ndarray | None, str | None]:
    """Inputs for full-int8 calibration and a sentence saying where they came from.

    ``path`` (``--calib``, x only) wins; else evenly spaced samples of ``fallback`` (the
    evaluation inputs); else None (calibrated modes are then skipped with the reason)."""
    if path is not None:
        cx = check_fits(load_eval(path, need_y=False), spec)
        idx = spread(len(cx), k)
        return cx[idx], f"{path} ({len(idx)} of {len(cx)} samples, evenly spaced)"
    if fallback is None:
        return None, None
    idx = spread(len(fallback), k)
    return fallback[idx], (
        f"{len(idx)} evenly spaced samples of the evaluation data (no --calib given; they are "
        "also evaluated, so int8 accuracy may be slightly optimistic)")
