"""Evaluation data: an ``.npz`` with ``x`` (N, ...) model inputs and ``y`` targets.

``x``: float32 features (N, seq, features) or integer token ids (N, seq), sample axis first;
for a step model (N, steps, *one step).
``y``: class ids (N,) for classification, or a label per step (N, steps); values (N,) or
(N, horizon) for forecasting, or a value array per step (N, steps, *out) judged element-wise.
``meta`` (optional): a JSON string; ``task`` says the task, ``output`` names (or numbers) the
model output ``y`` judges when the model has several (``bench --judge-output`` overrides).
Other arrays (e.g. ``clean``, ``noisy``) go to the parameters of a ``--metric-fn`` that name
them; arrays named like a step model's state input are each sample's initial state.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgernn.errors import EdgeRNNError
from edgernn.limits import check_npy_header, check_zip
from edgernn.model.spec import InputSpec


@dataclass
class EvalData:
    x: np.ndarray
    y: np.ndarray
    task: str
    path: Path | None = None
    output: str | None = None  # the model output ``y`` judges (meta "output"), if named


def save_eval(path: Path, x: np.ndarray, y: np.ndarray, task: str, **meta) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y, meta=np.array(json.dumps({"task": task, **meta})))


def load_eval(path: str | Path, need_y: bool = True) -> EvalData:
    """Load and sanity-check an evaluation file; raise a one-line error on anything off.

    ``need_y=False`` reads calibration inputs: ``x`` alone is enough (``y`` is then empty)."""
    p = Path(path)
    if not p.is_file():
        raise EdgeRNNError(f"evaluation data {p} does not exist")
    _check_declared_sizes(p)
    try:
        with np.load(p, allow_pickle=False) as f:
            keys = set(f.files)
            missing = ({"x", "y"} if need_y else {"x"}) - keys
            if missing:
                what = ("an evaluation file needs 'x' (inputs) and 'y' (targets)" if need_y
                        else "a calibration file needs 'x' (model inputs)")
                raise EdgeRNNError(
                    f"{p}: missing array(s) {', '.join(sorted(missing))}; {what}, found "
                    f"{sorted(keys) or 'none'}"
                )
            x = f["x"]
            y = f["y"] if "y" in keys else None
            meta = json.loads(str(f["meta"])) if "meta" in keys else {}
    except EdgeRNNError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, json.JSONDecodeError) as e:
        raise EdgeRNNError(f"{p} is not a readable .npz file ({type(e).__name__}: {e})") from None
    except MemoryError:
        raise EdgeRNNError(f"{p} does not fit in this machine's memory; use fewer samples") \
            from None
    if not isinstance(meta, dict):
        raise EdgeRNNError(f"{p}: 'meta' must be a JSON object string, got {str(meta)[:40]!r}")
    if 0 in x.shape[1:]:
        raise EdgeRNNError(f"{p}: 'x' has shape {list(x.shape)}, with a zero-length axis (an "
                           "empty sequence or no features); every sample needs at least one "
                           "step of data")
    if y is None:
        if x.ndim < 2 or len(x) == 0 or x.dtype.kind not in "fiu":
            raise EdgeRNNError(f"{p}: 'x' has shape {x.shape} {x.dtype}; need numeric "
                               "(samples, seq[, features])")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise EdgeRNNError(f"{p}: 'x' contains NaN or Inf")
        return EvalData(x, np.zeros((len(x),), np.int64), str(meta.get("task") or ""), p)
    if y.ndim == 0:
        raise EdgeRNNError(f"{p}: 'y' is a scalar; need one target per sample")
    if x.ndim < 2 or len(x) == 0:
        raise EdgeRNNError(f"{p}: 'x' has shape {x.shape}; need (samples, seq[, features])")
    if len(y) != len(x):
        raise EdgeRNNError(f"{p}: 'x' has {len(x)} samples but 'y' has {len(y)}")
    if x.dtype.kind not in "fiu" or y.dtype.kind not in "fiu":
        raise EdgeRNNError(f"{p}: 'x' and 'y' must be numeric, got {x.dtype} and {y.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise EdgeRNNError(f"{p}: 'x' contains NaN or Inf")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise EdgeRNNError(f"{p}: 'y' contains NaN or Inf")
    task = meta.get("task") or ("classify" if y.dtype.kind in "iu" else "forecast")
    output = meta.get("output")
    return EvalData(x, y, task, p, None if output is None else str(output))


def _check_declared_sizes(p: Path) -> None:
    """Before numpy reads anything: the archive's declared sizes within memory and not a zip
    bomb, and no array header declaring more data than its member holds."""
    with open(p, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return  # a plain .npy or not numpy at all: np.load says which
    infos = check_zip(p, "evaluation data")
    try:
        with zipfile.ZipFile(p) as z:
            for info in infos:
                if info.filename.endswith(".npy"):
                    check_npy_header(z, info, str(p))
    except (zipfile.BadZipFile, OSError) as e:
        raise EdgeRNNError(f"{p} is not a readable .npz file ({e})") from None


def check_fits(data: EvalData, spec: InputSpec, accepts_seq: bool = True) -> np.ndarray:
    """Return ``x`` cast to the model's dtype; raise if its shape or dtype does not fit."""
    x = data.x
    want = spec.shape
    # eval x is sample-first; the model may be seq-first
    model_axes = list(range(len(want)))
    if x.ndim != len(want):
        raise EdgeRNNError(
            f"evaluation 'x' has shape {list(x.shape)} (samples first) but the model takes "
            f"{len(want)}-d input {spec.to_dict()['shape']}"
        )
    for i in model_axes:
        ax = spec.axes[i]
        if ax.name == "batch" or i == spec.batch_axis:
            continue
        xi = _model_axis_to_data_axis(i, spec.batch_axis)
        if ax.name == "seq" and accepts_seq:
            continue
        if x.shape[xi] != ax.size:
            what = ax.name or f"axis {i}"
            raise EdgeRNNError(
                f"evaluation 'x' has {x.shape[xi]} along {what} but the model expects {ax.size} "
                f"(model input {spec.to_dict()['shape']}, data {list(x.shape)})"
            )
    if spec.is_tokens:
        if x.dtype.kind == "f":
            raise EdgeRNNError(
                f"evaluation 'x' is {x.dtype} but the model takes integer token ids ({spec.dtype})"
            )
        if spec.vocab_size and (x.min() < 0 or x.max() >= spec.vocab_size):
            raise EdgeRNNError(
                f"evaluation 'x' has token ids in [{x.min()}, {x.max()}] but the model's "
                f"vocabulary has {spec.vocab_size} ids"
            )
        return x.astype(spec.dtype)
    if x.dtype.kind != "f":
        raise EdgeRNNError(f"evaluation 'x' is {x.dtype} but the model takes float features")
    return x.astype(np.float32)


def check_fits_steps(data: EvalData, spec: InputSpec) -> np.ndarray:
    """Step data of a streaming model: ``x`` [N, T, *one step without its batch axis]; return
    it cast to the model's dtype, or raise naming the step shape the model takes."""
    x = data.x
    step = [a.size for i, a in enumerate(spec.axes) if i != spec.batch_axis]
    if x.ndim != len(step) + 2 or list(x.shape[2:]) != step:
        raise EdgeRNNError(
            f"evaluation 'x' has shape {list(x.shape)}, but a step model taking "
            f"{spec.to_dict()['shape']} per call needs [samples, steps, {', '.join(map(str, step))}]"
            " (each sample's sequence of steps)")
    if spec.is_tokens:
        if x.dtype.kind == "f":
            raise EdgeRNNError(f"evaluation 'x' is {x.dtype} but the model takes integer ids")
        return x.astype(spec.dtype)
    if x.dtype.kind != "f":
        raise EdgeRNNError(f"evaluation 'x' is {x.dtype} but the model takes float features")
    return x.astype(np.float32)


def _model_axis_to_data_axis(i: int, batch_axis: int) -> int:
    """Data is sample-first; map a model axis index to the data axis index."""
    if i == batch_axis:
        return 0
    return i + 1 if i < batch_axis else i


def to_model_layout(x: np.ndarray, batch_axis: int) -> np.ndarray:
    return x if batch_axis == 0 else np.moveaxis(x, 0, batch_axis)


def check_targets(data: EvalData, spec: InputSpec, task: str, classes: int | None = None) -> None:
    """``y`` must suit the task: class ids within the model's classes (from the spec, else
    ``classes`` as seen in one forward pass), or finite values with the model's horizon."""
    y = data.y
    if task == "classify":
        if y.dtype.kind not in "iu":
            raise EdgeRNNError(f"evaluation 'y' is {y.dtype}; classification needs integer class ids")
        steps = data.x.shape[1] if data.x.ndim > 1 else None
        if y.ndim == 2 and y.shape[1] != steps:
            raise EdgeRNNError(
                f"evaluation 'y' has shape {list(y.shape)}: a label per step needs [N, "
                f"{steps}] (the steps of 'x' {list(data.x.shape)})")
        if y.ndim not in (1, 2):
            raise EdgeRNNError(f"evaluation 'y' has shape {list(y.shape)}; classification "
                               "needs (N,) or a label per step (N, steps)")
        n = spec.num_classes or classes
        if y.min() < 0 or (n and y.max() >= n):
            raise EdgeRNNError(
                f"evaluation 'y' has class ids in [{y.min()}, {y.max()}] but the model scores "
                f"{n} classes (ids 0..{(n or 1) - 1})")
    else:
        width = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
        if spec.horizon and width != spec.horizon:
            raise EdgeRNNError(
                f"evaluation 'y' has {width} value(s) per sample but the model forecasts "
                f"{spec.horizon}")
