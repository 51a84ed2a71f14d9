"""What a bench is asked to do (``BenchSettings``), the hash of every setting that changes a
measured number, and the probe job one timing trial runs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgernn.convert.calibration import SAMPLES
from edgernn.measure.trials import TRIALS, trial_budget
from edgernn.runners.target import Target


@dataclass
class BenchSettings:
    threads: int | None = None
    warmup: int = 20
    min_runs: int = 100
    max_runs: int = 1_000_000  # a safety cap only: --runs and --min-seconds decide
    min_seconds: float = 1.0
    eval_batch: int = 1  # batch 1 as deployed: dynamic int8 scales depend on the batch
    collapse: float = 0.10  # relative degradation of the primary metric that marks a collapse
    formats: list[str] | None = None
    modes: list[str] | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    calib_path: Path | None = None
    calib_samples: int = SAMPLES
    step_ms: float | None = None  # stream time one step covers: rows get rtf = p50 / step_ms
    max_drop: float | None = None  # accuracy-aware int8: the largest accepted metric drop
    opt_in: frozenset[str] = frozenset()  # other opt-in variant groups: "per-op", "tune"
    store: Any = None  # edgernn.results.store.Store: rows are saved there and reused unless force
    force: bool = False
    trials: int = TRIALS  # timing trials per variant, separate processes, round-robin
    only: frozenset[str] | None = None  # measure only these variants (a sweep's one-variant task)
    scratch: Path | None = None  # where the probe's data file goes (default: the model's work dir)
    peer: bool = True  # measure the torch-int8-dynamic peer row (a sweep's prepare task does)
    # the target's runtime versions when the caller knows them, or how to ask only when a
    # stored row needs them (a sweep asks each device once)
    installed: dict[str, str | None] | Callable[[], dict[str, str | None]] | None = None
    row_notes: tuple[str, ...] = ()  # said on every row measured here (e.g. by a sweep)
    # the user's metric (``metrics.user.MetricFn``): judges every row on this host
    metric_fn: Any = None
    judged_output: str | None = None  # the output ``y`` judges, by name or index


def settings_key(settings: BenchSettings, target: Target, threads: int,
                 calib_sha: str | None, signature: dict[str, Any] | None = None) -> str:
    """Hash of every setting that changes a measured number: a stored row is reused only
    when all of them match (the runtime version is checked against the target separately)."""
    key = {"runs": settings.min_runs, "min_seconds": settings.min_seconds,
           "warmup": settings.warmup, "max_runs": settings.max_runs, "threads": threads,
           "cpus": target.cpus, "eval_batch": settings.eval_batch, "calib": calib_sha,
           "calib_samples": settings.calib_samples, "collapse": settings.collapse,
           "trials": settings.trials, "step_ms": settings.step_ms, "max_drop": settings.max_drop,
           # how the file was read: other --input/--state pairs make another model
           "signature": signature}
    if settings.metric_fn is not None:  # only when set: older stored rows keep their hash
        key["metric_fn"] = settings.metric_fn.key()
    if settings.judged_output is not None:
        key["judged_output"] = settings.judged_output
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def probe_job(settings: BenchSettings, target: Target, threads: int) -> dict[str, Any]:
    """The probe job of one timing trial (the timing budget is split across the trials)."""
    runs, seconds = trial_budget(settings.min_runs, settings.min_seconds, settings.trials)
    return {
        "threads": threads, "cpus": target.cpus, "warmup": settings.warmup,
        "min_runs": runs, "max_runs": settings.max_runs,
        "min_seconds": seconds, "eval_batch": settings.eval_batch, "data": "data",
        "step_ms": settings.step_ms,
    }
