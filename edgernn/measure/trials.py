"""Several timing trials of one variant, in separate processes, combined into one latency.

One process sees one state of a shared machine: the same file benched in three launches gave
p50 0.69, 0.70 and 0.99 ms. The bench therefore times every variant in several trials,
interleaved round-robin across variants (PyTorch included), and reports the median of the
trial medians with the spread between trials; a row whose trials disagree is ``unstable``.
"""

from __future__ import annotations

import math
from statistics import median
from typing import Any

import numpy as np

TRIALS = 3
UNSTABLE_SPREAD = 0.20  # (max - min) / median of the trial p50s above which a row is unstable


def spread(p50s: list[float]) -> float:
    """Relative range of the trial medians: (max - min) / median; 0 for one trial."""
    if len(p50s) < 2:
        return 0.0
    mid = median(p50s)
    return (max(p50s) - min(p50s)) / mid if mid > 0 else 0.0


def trial_budget(min_runs: int, min_seconds: float, trials: int) -> tuple[int, float]:
    """Per-trial share of the timing budget, so N trials cost about what one long run did."""
    return max(1, math.ceil(min_runs / trials)), min_seconds / trials


def combine(latencies: list[dict[str, Any]]) -> dict[str, Any]:
    """One latency summary from per-trial summaries: each statistic is the median across
    trials (count is the total, min/max the extremes); the trial p50s and spread are kept."""
    out = dict(latencies[0])  # other keys (first, load, a runner's extras) are trial 1's
    for k in ("p50", "p90", "p99", "mean", "std", "iqr", "p5", "p95"):
        vals = _present(latencies, k)  # a runner may not report every statistic
        if vals:
            out[k] = float(median(vals))
    for k, fold in (("min", min), ("max", max), ("count", sum)):
        vals = _present(latencies, k)
        if vals:
            out[k] = fold(vals) if k != "count" else int(fold(vals))
    qs = [lat["quantiles"] for lat in latencies if lat.get("quantiles")]
    if qs and len({len(q) for q in qs}) == 1:
        out["quantiles"] = [float(v) for v in np.median(np.asarray(qs), axis=0)]
    p50s = [float(lat["p50"]) for lat in latencies]
    out["trials"] = len(latencies)
    out["trial_p50"] = p50s
    out["spread"] = spread(p50s)
    return out


def _present(latencies: list[dict[str, Any]], key: str) -> list[float]:
    return [float(lat[key]) for lat in latencies if lat.get(key) is not None]


def mark_unstable(row: dict[str, Any], threshold: float = UNSTABLE_SPREAD) -> None:
    """Flag a row whose trial medians differ by more than ``threshold`` (relative)."""
    lat = row.get("latency_ms") or {}
    s = lat.get("spread") or 0.0
    row["unstable"] = bool(lat.get("trials", 1) > 1 and s > threshold)
    if row["unstable"]:
        p50s = "/".join(f"{v:.3g}" for v in lat["trial_p50"])
        row["notes"] = [*row.get("notes", []), (
            f"unstable timing: trial medians {p50s} ms differ by {s:.0%} (> {threshold:.0%}); "
            "the machine was busy or throttling, compare with care")]
