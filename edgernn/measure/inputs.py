"""What the probe gets for one model: the data checked against the model's (step) shape, the
step plan of a model with several inputs, initial states from the data, and how a single
score column is cut (logit or probability)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgernn.data.evalfile import check_fits, check_fits_steps, to_model_layout
from edgernn.errors import EdgeRNNError
from edgernn.model.loading import LoadedModel
from edgernn.model.signature import plan_of
from edgernn.probe.stepping import Stepper


def model_job(model: LoadedModel, task: str, threshold: float) -> dict[str, Any]:
    """The probe job's description of the model: layout, score threshold and, for a model
    with several inputs, the step plan (every input's shape, which outputs feed the state)."""
    job: dict[str, Any] = {"task": task, "batch_axis": model.spec.batch_axis,
                           "threshold": threshold}
    if len(model.sig.inputs) > 1:
        job["plan"] = plan_of(model.sig.to_dict())
    return job


def fit_data(model: LoadedModel, data: Any) -> np.ndarray:
    """The evaluation inputs in the model's dtype, checked against its (step) shape."""
    if model.sig.is_streaming:
        return check_fits_steps(data, model.spec)
    if len(model.sig.data_inputs) > 1:
        raise EdgeRNNError("evaluating a model with several data inputs is not supported yet "
                           f"(inputs: {', '.join(t.name for t in model.sig.data_inputs)})")
    return check_fits(data, model.spec)


def per_step(model: LoadedModel, y: np.ndarray, task: str) -> int | None:
    """Steps per sample when a whole-sequence classifier is judged by a label per step."""
    return int(y.shape[1]) if task == "classify" and y.ndim == 2 and \
        not model.sig.is_streaming else None


@torch.no_grad()
def reference_scores(model: LoadedModel, x: np.ndarray, samples: int = 8,
                     steps: int | None = None) -> np.ndarray:
    """PyTorch's prediction output on the first samples (chained through the steps for a step
    model), flattened per call; ``steps``: a whole-sequence output per step, one row each."""
    if model.sig.is_streaming:
        stepper = Stepper(model.outputs, plan_of(model.sig.to_dict()))
        return np.concatenate([np.stack([o.reshape(-1) for o in stepper.run(x[i])])
                               for i in range(min(samples, len(x)))])
    xs = to_model_layout(x[:samples], model.spec.batch_axis)
    out = model(xs)[model.sig.prediction_index].numpy()
    out = out.reshape(len(out), -1) if out.ndim else out.reshape(1, 1)
    return out.reshape(len(out) * steps, -1) if steps else out


def initial_states(model: LoadedModel, path: Path, n: int) -> dict[str, np.ndarray]:
    """Arrays of the evaluation file named like a state input: each sample's initial state
    ([N, *state shape without batch]), saved for the probe as ``init_<name>``."""
    out: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as f:
        for t in model.sig.inputs:
            if t.role != "state" or t.name not in f.files or t.name in ("x", "y"):
                continue
            a = f[t.name]
            want = [n, *(s for i, s in enumerate(t.with_sizes(batch=1))
                         if i != t.axis_index("batch"))]
            if list(a.shape) != want:
                raise EdgeRNNError(f"{path}: initial state {t.name!r} has shape {list(a.shape)}; "
                                   f"the model's state needs {want} (samples first)")
            out[f"init_{t.name}"] = a.astype(t.dtype)
    return out


def score_threshold(model: LoadedModel, x: np.ndarray, task: str,
                    steps: int | None = None) -> tuple[float, str | None]:
    """Where a single-column classifier output is cut: 0.5 when every fp32 output on the first
    samples lies in [0, 1] (a probability), else 0 (a logit); with the note saying so."""
    if task != "classify":
        return 0.0, None
    out = reference_scores(model, x, steps=steps)
    if out.shape[1] != 1:
        return 0.0, None
    if float(out.min()) >= 0.0 and float(out.max()) <= 1.0:
        return 0.5, "the single output is read as a probability (cut at 0.5): every fp32 output " \
                    "on the first samples lies in [0, 1]"
    return 0.0, "the single output is read as a logit (cut at 0)"
