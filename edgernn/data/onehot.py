"""One-hot labels: ``y [N, C]`` float whose rows are all 0 but one 1 are class labels, not C
values to forecast. They become class ids (argmax) with a note saying so, unless the file's
meta or the model says the task is forecasting."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from edgernn.data.evalfile import EvalData


def is_one_hot(y: np.ndarray) -> bool:
    """Float ``[N, C]`` (C >= 2) with every value 0 or 1 and one 1 per row."""
    if y.ndim != 2 or y.shape[1] < 2 or y.dtype.kind != "f" or not len(y):
        return False
    return bool(np.isin(y, (0.0, 1.0)).all() and (y.sum(axis=1) == 1).all())


def _meta_task(data: EvalData) -> str | None:
    """The task the evaluation file's meta states, if any."""
    if data.path is None:
        return None
    try:
        with np.load(data.path, allow_pickle=False) as f:
            return json.loads(str(f["meta"])).get("task") if "meta" in f.files else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def one_hot_to_labels(data: EvalData, model_task: str | None = None) -> tuple[EvalData, str | None]:
    """``data`` with one-hot ``y`` turned into class ids (and the task classify), and the note
    saying so; unchanged (note None) when ``y`` is not one-hot or forecasting was stated."""
    if not is_one_hot(data.y) or "forecast" in (model_task, _meta_task(data)):
        return data, None
    n, c = data.y.shape
    note = (f"y [{n}, {c}] is one-hot: read as class ids 0..{c - 1} (argmax of each row) and "
            "judged as classification; save integer class ids, or meta task 'forecast' to "
            "forecast the values")
    return replace(data, y=np.argmax(data.y, axis=1).astype(np.int64), task="classify"), note
