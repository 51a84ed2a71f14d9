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


def model_job(model: LoadedModel, task: str, threshold: float,
              output: int | None = None) -> dict[str, Any]:
    """The probe job's description of the model: layout, score threshold, the output ``y``
    judges (index; default the first prediction output) and, for a model with several inputs,
    the step plan (every input's shape, which outputs feed the state)."""
    job: dict[str, Any] = {"task": task, "batch_axis": model.spec.batch_axis,
                           "threshold": threshold}
    if len(model.sig.inputs) > 1:
        job["plan"] = plan_of(model.sig.to_dict())
        if output is not None:
            job["plan"]["prediction"] = output
    elif output:
        job["output"] = output
    return job


def judged_output(model: LoadedModel, name: str | None) -> int | None:
    """Index of the output ``y`` judges, named (or numbered) by ``--judge-output`` or the
    evaluation file's ``meta["output"]``; None: the model's first prediction output."""
    if name is None:
        return None
    outs = model.sig.outputs
    k = int(name) if name.isdigit() else next((i for i, t in enumerate(outs) if t.name == name),
                                              None)
    listing = ", ".join(f"{i}: {t.name} {t.shape}" + (" (state)" if t.role == "state" else "")
                        for i, t in enumerate(outs))
    if k is None or k >= len(outs):
        raise EdgeRNNError(f"judged output {name!r}: the model has no such output (outputs: "
                           f"{listing})")
    if outs[k].role == "state":
        raise EdgeRNNError(f"judged output {name!r} is a state the next step takes, not a "
                           f"prediction (outputs: {listing})")
    return k


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
                     steps: int | None = None, output: int | None = None) -> np.ndarray:
    """PyTorch's prediction output (or output ``output``) on the first samples (chained
    through the steps for a step model), flattened per call; ``steps``: a whole-sequence
    output per step, one row each."""
    k = model.sig.prediction_index if output is None else output
    if model.sig.is_streaming:
        stepper = Stepper(model.outputs, {**plan_of(model.sig.to_dict()), "prediction": k})
        return np.concatenate([np.stack([o.reshape(-1) for o in stepper.run(x[i])])
                               for i in range(min(samples, len(x)))])
    xs = to_model_layout(x[:samples], model.spec.batch_axis)
    out = model(xs)[k].numpy()
    out = out.reshape(len(out), -1) if out.ndim else out.reshape(1, 1)
    return out.reshape(len(out) * steps, -1) if steps else out


def fp32_judged(model: LoadedModel, x: np.ndarray, y: np.ndarray, task: str,
                output: int | None, samples: int = 2) -> np.ndarray:
    """PyTorch's judged outputs on the first samples, shaped as a metric function gets them
    (what the probe computes, here in-process); a one-line error when ``y`` does not fit them."""
    from edgernn.probe.main import judged_outputs
    from edgernn.probe.metrics import shaped_like_targets

    n = min(samples, len(x))
    raw = reference_scores(model, x, samples=n, output=output)
    streamed = model.sig.is_streaming
    if streamed:
        raw = raw.reshape(n, x.shape[1], -1)
    try:
        return shaped_like_targets(judged_outputs(raw, y[:n], task, streamed), y[:n], task)
    except ValueError:
        per = (f"{x.shape[1]} steps x {raw.shape[-1]} value(s)" if streamed
               else f"{raw.shape[-1]} value(s)")
        raise EdgeRNNError(
            f"evaluation 'y' has shape {list(y.shape)}, which does not fit the judged output "
            f"({per} per sample; a step model is judged on every step's output with y [N, T, "
            "*out], or on the last step's with y [N, *out])") from None


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


def score_threshold(model: LoadedModel, x: np.ndarray, task: str, steps: int | None = None,
                    output: int | None = None) -> tuple[float, str | None]:
    """Where a single-column classifier output is cut: 0.5 when every fp32 output on the first
    samples lies in [0, 1] (a probability), else 0 (a logit); with the note saying so."""
    if task != "classify":
        return 0.0, None
    out = reference_scores(model, x, steps=steps, output=output)
    if out.shape[1] != 1:
        return 0.0, None
    if float(out.min()) >= 0.0 and float(out.max()) <= 1.0:
        return 0.5, "the single output is read as a probability (cut at 0.5): every fp32 output " \
                    "on the first samples lies in [0, 1]"
    return 0.0, "the single output is read as a logit (cut at 0)"
