"""One timing loop and one set of statistics, used for every runtime and target."""

from __future__ import annotations

import gc
import os
import time
from array import array
from collections.abc import Callable

import numpy as np


def time_calls(
    fn: Callable[[], object], *, warmup: int = 20, min_runs: int = 100,
    max_runs: int = 1_000_000, min_seconds: float = 1.0,
) -> list[float]:
    """Call ``fn`` ``warmup`` times, then until both ``min_runs`` and ``min_seconds`` are
    reached (``max_runs`` is only a safety cap); return per-call latencies in milliseconds.
    Samples go into a compact array (8 bytes each) so timing barely moves peak memory."""
    for _ in range(warmup):
        fn()
    samples = array("d")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(samples) < max_runs:
            t0 = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - t0) / 1e6)
            if len(samples) >= min_runs and time.perf_counter() - start >= min_seconds:
                break
    finally:
        if gc_was:
            gc.enable()
    return list(samples)


def summarize(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    q25, q50, q75, q90, q99 = np.percentile(a, [25, 50, 75, 90, 99])
    return {
        "p50": float(q50), "p90": float(q90), "p99": float(q99), "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "min": float(a.min()),
        "max": float(a.max()), "iqr": float(q75 - q25), "count": int(len(a)),
        # every 5th percentile, so reports can draw the distribution without raw samples
        "quantiles": [float(v) for v in np.percentile(a, np.arange(0, 101, 5))],
    }


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux clear_refs 5); False where unsupported."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float | None:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return kb / 1024
