"""The user's metric (``--metric-fn FILE.py:NAME``, ``pkg.module:NAME`` or a built-in NAME):
loaded and checked on this host, called as ``fn(y_true, y_pred) -> float`` over the evaluation
set on the outputs each probe sends back (devices never import it).

Parameters after the first two receive the evaluation file's arrays of the same name (e.g.
``clean``, ``noisy``), sample axis first. The direction is ``--higher-is-better`` /
``--lower-is-better``, else the function's own ``higher_is_better`` attribute. Per-sample values
for the significance test in ``select`` are the function on each sample alone."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.errors import EdgeRNNError
from edgernn.metrics.builtin import BUILTINS


@dataclass
class MetricFn:
    """A loaded metric function: its name (the rows' metric), direction and where it came
    from; ``arrays`` are the evaluation file's arrays its extra parameters name."""

    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    source: str  # "builtin", "FILE.py:NAME" or "pkg.module:NAME"
    sha256: str | None = None  # of the file, when from a file
    params: tuple[str, ...] = ()  # npz arrays passed by keyword after y_true, y_pred

    def key(self) -> dict[str, Any]:
        """What identifies the metric in a stored row's settings hash."""
        return {"name": self.name, "source": self.source, "sha256": self.sha256,
                "higher_is_better": self.higher_is_better}

    def score(self, y_true: np.ndarray, y_pred: np.ndarray,
              arrays: dict[str, np.ndarray] | None = None) -> float:
        """The function's value, checked: one finite real number, else a one-line error."""
        kw = {p: (arrays or {})[p] for p in self.params}
        try:
            value = self.fn(y_true, y_pred, **kw)
        except Exception as e:
            raise EdgeRNNError(f"metric {self.name} ({self.source}) failed: {type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
        return as_float(value, self.name)

    def per_sample(self, y_true: np.ndarray, y_pred: np.ndarray,
                   arrays: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The function on each sample alone (its mean is the set's value for a mean over
        samples, e.g. MAE; for F1 and the like it is an approximation)."""
        arrays = arrays or {}
        return np.array([self.score(y_true[i:i + 1], y_pred[i:i + 1],
                                    {p: arrays[p][i:i + 1] for p in self.params})
                         for i in range(len(y_true))])


def as_float(value: Any, name: str) -> float:
    """``value`` as a float when it is one finite real number (a 0-d or 1-element array too)."""
    v = value
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(()).item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise EdgeRNNError(f"metric {name} returned {type(value).__name__} {str(value)[:60]!r}; "
                           "it must return one finite number")
    if not math.isfinite(float(v)):
        raise EdgeRNNError(f"metric {name} returned {float(v)}; it must return one finite number")
    return float(v)


def load_metric_fn(spec: str, higher_is_better: bool | None = None) -> MetricFn:
    """``FILE.py:NAME``, ``pkg.module:NAME`` or a built-in name; a one-line error for a
    missing file, module or name, something not callable, or no direction."""
    what = f"--metric-fn {spec}"
    sha = None
    if ":" not in spec:
        fn = BUILTINS.get(spec)
        if fn is None:
            raise EdgeRNNError(f"{what}: no built-in metric {spec!r} (built-ins: "
                               f"{', '.join(BUILTINS)}; or FILE.py:NAME, pkg.module:NAME)")
        source, name = "builtin", spec
    else:
        where, _, name = spec.rpartition(":")
        if not where or not name.isidentifier():
            raise EdgeRNNError(f"{what}: expected FILE.py:NAME or pkg.module:NAME")
        if where.endswith(".py") or "/" in where:
            path = Path(where)
            if not path.is_file():
                raise EdgeRNNError(f"{what}: {path} does not exist")
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            module = _import_file(path, sha, what)
        else:
            try:
                module = importlib.import_module(where)
            except Exception as e:
                raise EdgeRNNError(f"{what}: cannot import {where} ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
        fn = getattr(module, name, None)
        if fn is None:
            raise EdgeRNNError(f"{what}: {where} has no {name!r}")
        source = spec
    if not callable(fn):
        raise EdgeRNNError(f"{what}: {name} is a {type(fn).__name__}, not a function")
    higher = higher_is_better if higher_is_better is not None else getattr(
        fn, "higher_is_better", None)
    if not isinstance(higher, (bool, np.bool_)):
        raise EdgeRNNError(f"{what}: say which way is better: --higher-is-better or "
                           f"--lower-is-better (or set {name}.higher_is_better = True/False)")
    return MetricFn(name, fn, bool(higher), source, sha, _extra_params(fn, what))


def _import_file(path: Path, sha: str, what: str) -> Any:
    module_name = f"edgernn_metric_{sha[:12]}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:
        raise EdgeRNNError(f"{what}: {path} failed to import ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    return module


def _extra_params(fn: Callable[..., Any], what: str) -> tuple[str, ...]:
    """Names of the parameters after ``y_true, y_pred`` that need a value (npz arrays)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return ()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise EdgeRNNError(f"{what}: the function must take (y_true, y_pred), it takes "
                           f"({', '.join(p.name for p in params)})")
    return tuple(p.name for p in params[2:] if p.default is p.empty
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def return_limit_mb(fp32: np.ndarray, samples: int) -> float:
    """The cap on the outputs a probe sends back for the metric function; a one-line error
    when the evaluation set's judged outputs (float32, from the first samples' size) exceed it."""
    from edgernn.probe.metrics import RETURN_LIMIT_MB

    mb = samples * (fp32[0].size if len(fp32) else 0) * 4 / 1e6
    if mb > RETURN_LIMIT_MB:
        raise EdgeRNNError(
            f"--metric-fn judges on this host every output a device computes: {samples} samples x "
            f"{list(fp32.shape[1:])} float32 = {mb:.0f} MB, more than the {RETURN_LIMIT_MB:g} MB a "
            "probe sends back; evaluate on fewer samples")
    return RETURN_LIMIT_MB


@dataclass
class HostJudge:
    """The metric function bound to one evaluation set: judges each probe result's returned
    outputs on this host and records the verdict in the row."""

    metric: MetricFn
    y: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def bind(cls, metric: MetricFn, y: np.ndarray, data_path: Path) -> HostJudge:
        """The arrays the function's extra parameters name, read from the evaluation file."""
        arrays: dict[str, np.ndarray] = {}
        with np.load(data_path, allow_pickle=False) as f:
            for p in metric.params:
                if p not in f.files:
                    raise EdgeRNNError(f"metric {metric.name} takes {p!r}, but {data_path} has no "
                                       f"array {p!r} (arrays: {', '.join(f.files)})")
                arrays[p] = f[p]
                if len(arrays[p]) != len(y):
                    raise EdgeRNNError(f"{data_path}: {p!r} has {len(arrays[p])} samples, 'y' "
                                       f"{len(y)}")
        return cls(metric, y, arrays)

    def take(self, idx: np.ndarray) -> HostJudge:
        """The judge of the samples ``idx`` only."""
        return HostJudge(self.metric, self.y[idx], {k: a[idx] for k, a in self.arrays.items()})

    def check(self, y_pred: np.ndarray) -> None:
        """Refuse a function that fails or returns no number on the first samples' fp32
        outputs (before anything is exported or measured)."""
        n = len(y_pred)
        self.metric.score(self.y[:n], y_pred, {k: a[:n] for k, a in self.arrays.items()})

    def apply(self, row: dict[str, Any], res: dict[str, Any]) -> None:
        """Judge the outputs a probe sent back; the row's metric becomes this one."""
        from edgernn.probe.metrics import per_sample_values, unpack_array

        m = self.metric
        row.update(metric=m.name, higher_is_better=m.higher_is_better, metric_fn=m.source)
        packed = res.get("outputs")
        if packed is None:
            row.update(status="run failed", value=None,
                       reason=f"the probe sent no outputs back for metric {m.name}")
            return
        pred = unpack_array(packed)
        try:
            value = m.score(self.y, pred, self.arrays)
        except EdgeRNNError as e:  # on this variant's outputs (e.g. NaN): the row fails
            row.update(status="run failed", value=None, reason=str(e))
            return
        row["metrics"] = {**(row.get("metrics") or {}), m.name: value}
        row["value"] = value
        try:
            values = m.per_sample(self.y, pred, self.arrays)
        except EdgeRNNError as e:
            row.pop("per_sample", None)
            row["notes"] = [*row.get("notes", []), f"no per-sample {m.name} for significance "
                            f"tests: the function fails on one sample alone ({e})"]
            return
        row["per_sample"] = per_sample_values(values, m.name)
