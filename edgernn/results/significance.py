"""Is an accuracy difference real? Paired tests on the evaluation samples both sides saw.

Classification: McNemar's exact test on the discordant pairs (samples one side gets right and
the other wrong), with a Wald interval for the paired difference of accuracies. Error metrics:
a paired bootstrap of the per-sample error difference (percentile interval).

Per-sample records (what a bench row needs for this) are compact: correctness as packed bits,
or per-sample absolute errors as float32, base64 in JSON.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Any

import numpy as np

from edgernn.errors import EdgeRNNError
from edgernn.probe.metrics import HIGHER_IS_BETTER, per_sample, per_sample_record  # noqa: F401

ALPHA = 0.05
RESAMPLES = 2000


@dataclass
class Paired:
    """A - B on the same samples: ``difference`` in metric units (accuracy: share of samples;
    error: mean absolute error), its (1 - alpha) interval and the test's verdict."""

    kind: str  # "correct" or "abs_error"
    n: int
    difference: float
    low: float
    high: float
    p_value: float
    significant: bool
    test: str

    def describe(self, scale: float = 1.0, unit: str = "") -> str:
        """E.g. ``+2.2 points [-2.5, +6.9], McNemar exact (30 vs 22 discordant) p=0.33: not
        significant``."""
        verdict = "significant" if self.significant else "not significant"
        return (f"{self.difference * scale:+.3g}{unit} [{self.low * scale:+.3g}, "
                f"{self.high * scale:+.3g}], {self.test} p={self.p_value:.2g}: {verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "difference": self.difference,
                "interval": [self.low, self.high], "p_value": self.p_value,
                "significant": self.significant, "test": self.test}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: under no difference each of the ``b + c`` discordant
    pairs falls either way with probability 1/2 (binomial tail, doubled, capped at 1)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def paired_correct(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> Paired:
    """Accuracy of A minus accuracy of B from per-sample correctness (bool arrays)."""
    a, b = _pair(a, b)
    a, b = a.astype(bool), b.astype(bool)
    n = len(a)
    only_a = int(np.sum(a & ~b))  # A right, B wrong
    only_b = int(np.sum(~a & b))
    d = (only_a - only_b) / n
    se = math.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = mcnemar_exact(only_a, only_b)
    return Paired("correct", n, d, d - z * se, d + z * se, p, p < alpha,
                  f"McNemar exact ({only_a} vs {only_b} discordant)")


def paired_errors(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA,
                  resamples: int = RESAMPLES, seed: int = 0) -> Paired:
    """Mean error of A minus mean error of B from per-sample errors: a paired bootstrap (the
    same resampled samples for both sides), percentile interval; significant when it
    excludes 0. The p-value is the two-sided bootstrap share, floored at 1 / resamples."""
    a, b = _pair(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    n = len(diff)
    rng = np.random.default_rng(seed)
    boots = []
    chunk = max(1, 2_000_000 // n)  # resamples per step, bounded memory
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        boots.append(diff[rng.integers(0, n, size=(k, n))].mean(axis=1))
    boot = np.concatenate(boots)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    # two-sided bootstrap p; at least 1 / resamples (its resolution), never a bare 0
    p = min(1.0, max(2 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))),
                     1 / resamples))
    sig = bool(low > 0 or high < 0)
    return Paired("abs_error", n, float(diff.mean()), float(low), float(high), p, sig,
                  f"paired bootstrap ({resamples} resamples)")


def paired_test(a: np.ndarray, b: np.ndarray, kind: str, alpha: float = ALPHA) -> Paired:
    """A vs B on the same samples: ``kind`` "correct" (per-sample correctness) or
    "abs_error" (per-sample errors)."""
    if kind == "correct":
        return paired_correct(a, b, alpha)
    if kind in ("abs_error", "value"):  # a mean of per-sample values: paired bootstrap
        p = paired_errors(a, b, alpha)
        p.kind = kind
        return p
    raise EdgeRNNError(f"unknown per-sample kind {kind!r} (correct, abs_error or value)")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if len(a) != len(b) or not len(a):
        raise EdgeRNNError(f"paired test needs the same samples on both sides; got {len(a)} and "
                           f"{len(b)}")
    return a, b


def record_values(record: dict[str, Any]) -> np.ndarray:
    """The per-sample values of a record (bool correctness or float errors)."""
    n = int(record["n"])
    if record["kind"] == "correct":
        raw = np.frombuffer(base64.b64decode(record["bits"]), dtype=np.uint8)
        return np.unpackbits(raw)[:n].astype(bool)
    return np.frombuffer(base64.b64decode(record["float32"]), dtype="<f4")[:n].astype(np.float64)


def compare_rows(a: dict[str, Any], b: dict[str, Any], metric: str,
                 alpha: float = ALPHA) -> Paired | None:
    """The paired test of two bench rows on the same evaluation data (A minus B, in the
    metric's units with higher = better for accuracy, error for error metrics, the metric
    function's own units for a user's metric); None when either lacks a per-sample record of
    that metric, or they saw different data. The primary metrics (accuracy, mae) and a
    ``--metric-fn`` (its value on each sample alone) have per-sample records."""
    ra, rb = a.get("per_sample"), b.get("per_sample")
    if not ra or not rb or (a.get("data_sha256") or "") != (b.get("data_sha256") or ""):
        return None
    kind = {"accuracy": "correct", "mae": "abs_error"}.get(metric, "value")
    if ra["kind"] != kind or rb["kind"] != kind or ra["n"] != rb["n"]:
        return None
    if kind == "value" and not (ra.get("metric") == rb.get("metric") == metric):
        return None
    return paired_test(record_values(ra), record_values(rb), kind, alpha)


def unpaired_accuracy(a: float, na: int, b: float, nb: int, alpha: float = ALPHA) -> Paired:
    """Accuracy A minus B without per-sample records: a normal interval for two independent
    proportions (wider than the paired one: it ignores that both saw the same samples)."""
    d = a - b
    se = math.sqrt(a * (1 - a) / na + b * (1 - b) / nb)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = 2 * (1 - NormalDist().cdf(abs(d) / se)) if se > 0 else float(d == 0)
    return Paired("correct", min(na, nb), d, d - z * se, d + z * se, p,
                  bool(abs(d) > z * se), "unpaired normal interval (no per-sample records)")


def higher_is_better(metric: str, rows: list[dict[str, Any]]) -> bool:
    """The metric's direction: a row judged by it says (a user's metric function), else the
    built-in table (unknown: higher)."""
    said = next((r["higher_is_better"] for r in rows if r.get("metric") == metric
                 and r.get("higher_is_better") is not None), None)
    return bool(said) if said is not None else HIGHER_IS_BETTER.get(metric, True)


def significant_losses(rows: list[dict[str, Any]], metric: str,
                       alpha: float = ALPHA) -> tuple[dict[str, str], list[str]]:
    """For ``select`` with no accuracy budget: which rows are significantly less accurate than
    the most accurate one (variant -> reason), and lines saying what was tested. Rows inside
    the interval tie with the best; rows that cannot be tested stay candidates (said so)."""
    usable = [r for r in rows if (r.get("metrics") or {}).get(metric) is not None]
    if len(usable) < 2:
        return {}, []
    sign = 1 if higher_is_better(metric, usable) else -1
    best = max(usable, key=lambda r: sign * r["metrics"][metric])
    out: dict[str, str] = {}
    ties, untested, elsewhere = [], [], []
    for r in usable:
        if r is best:
            continue
        t = compare_rows(r, best, metric, alpha)
        same_data = (r.get("data_sha256") or "") == (best.get("data_sha256") or "")
        if t is None and metric == "accuracy" and same_data and r.get("eval_samples") and \
                best.get("eval_samples"):
            t = unpaired_accuracy(r["metrics"][metric], int(r["eval_samples"]),
                                  best["metrics"][metric], int(best["eval_samples"]), alpha)
        if t is None:
            (untested if same_data else elsewhere).append(r["variant"])
            continue
        worse = sign * t.difference < 0
        if t.significant and worse:
            scale, unit = (100.0, " points") if metric == "accuracy" else (1.0, "")
            out[r["variant"]] = (f"significantly less accurate than {best['variant']}: "
                                 f"{metric} {t.describe(scale, unit)}")
        else:
            ties.append(r["variant"])
    lines = [f"Accuracy rule (no --max-drop): {len(out)} variant(s) significantly less accurate "
             f"than the most accurate, {best['variant']} ({metric} {best['metrics'][metric]:.4g}), "
             f"are out; {len(ties)} tie with it (difference inside the 95% interval)"]
    if untested:
        lines.append(f"Not tested (no per-sample {metric} record; re-bench to record one): "
                     + ", ".join(untested))
    if elsewhere:  # select ranks one evaluation file at a time (groups.group_rows)
        lines.append(f"Not tested (judged on another evaluation file than "
                     f"{best['variant']}): " + ", ".join(elsewhere))
    return out, lines
