"""95% intervals for the LSTM-GRU differences the claims judge.

Two kinds of repeats make a measured difference uncertain: the training seed (each seed is a
new pair of models, LSTM and GRU trained from the same seed in lockstep) and, for a metric
computed on evaluation samples, the finite evaluation set (every seed's models see the same
samples). So:

- a quantity measured once per seed (time per epoch, epochs to a level, a latency): the paired
  per-seed differences and Student's t interval of their mean (``paired_seeds``);
- a metric on evaluation samples (accuracy, error): the per-sample differences of every seed,
  ``d[s, i]``; the seeds' term is Student's t interval of the per-seed means, the samples' term
  the normal interval of the mean over samples of the seed-averaged differences (a paired test
  on the samples), combined in quadrature (``paired_seeds_and_samples``).

Only the 95% level is offered (the t table below is for 0.975); more seeds narrow the seeds'
term as 1/sqrt(seeds), unlike a min-max range, which only widens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgernn.errors import EdgeRNNError

# Student's t 0.975 quantile by degrees of freedom (two-sided 95%); beyond 30: interpolated in
# 1/df towards the normal 1.959964
_T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 6: 2.446912, 7:
         2.364624, 8: 2.306004, 9: 2.262157, 10: 2.228139, 11: 2.200985, 12: 2.178813, 13:
         2.160369, 14: 2.144787, 15: 2.13145, 16: 2.119905, 17: 2.109816, 18: 2.100922, 19:
         2.093024, 20: 2.085963, 21: 2.079614, 22: 2.073873, 23: 2.068658, 24: 2.063899, 25:
         2.059539, 26: 2.055529, 27: 2.051831, 28: 2.048407, 29: 2.04523, 30: 2.042272}
Z975 = 1.959964


def t975(df: int) -> float:
    """Student's t 0.975 quantile for ``df`` degrees of freedom."""
    if df < 1:
        raise EdgeRNNError(f"a t interval needs at least 1 degree of freedom, got {df}")
    if df in _T975:
        return _T975[df]
    return Z975 + (_T975[30] - Z975) * 30 / df  # within 0.001 of the exact value for df > 30


@dataclass(frozen=True)
class Interval:
    """A difference (positive = the claimed direction unless said otherwise) with its 95%
    interval; ``seeds`` and ``samples`` say what it was computed over."""

    estimate: float
    low: float
    high: float
    seeds: int
    samples: int = 0
    method: str = ""

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def scaled(self, k: float) -> Interval:
        lo, hi = sorted((self.low * k, self.high * k))
        return Interval(self.estimate * k, lo, hi, self.seeds, self.samples, self.method)

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "seeds": self.seeds, "samples": self.samples, "method": self.method}


def exact(difference: float) -> Interval:
    """A difference that does not depend on the seed (a parameter count, a file size)."""
    return Interval(difference, difference, difference, 0, 0, "exact (no randomness)")


def paired_seeds(claimed: list[float], other: list[float]) -> Interval | None:
    """``other - claimed`` per seed (seed k of each side paired), its mean and Student's t
    95% interval; None with fewer than two pairs."""
    a, b = np.asarray(claimed, np.float64), np.asarray(other, np.float64)
    if a.shape != b.shape:
        raise EdgeRNNError(f"paired seeds need as many values on each side; got {len(a)} and "
                           f"{len(b)}")
    if len(a) < 2:
        return None
    d = b - a
    half = t975(len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
    m = float(d.mean())
    return Interval(m, m - half, m + half, len(d), 0, f"paired t over {len(d)} seeds")


def paired_seeds_and_samples(per_seed: list[tuple[np.ndarray, np.ndarray]]) -> Interval | None:
    """``a - b`` on the evaluation samples, over every seed: ``per_seed`` holds, per seed, the
    per-sample values of A and of B (correctness as 0/1, or errors) on the same samples.
    Estimate: the mean difference over seeds and samples. Interval: the seeds' t term and the
    samples' normal term in quadrature; None with no seed."""
    if not per_seed:
        return None
    d = np.stack([np.asarray(a, np.float64).reshape(-1) - np.asarray(b, np.float64).reshape(-1)
                  for a, b in per_seed])  # [seeds, samples]
    k, n = d.shape
    seed_means = d.mean(axis=1)
    seeds_term = (t975(k - 1) * float(seed_means.std(ddof=1)) / math.sqrt(k)) if k > 1 else 0.0
    per_sample = d.mean(axis=0)
    samples_term = Z975 * float(per_sample.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    half = math.hypot(seeds_term, samples_term)
    m = float(d.mean())
    return Interval(m, m - half, m + half, k, n,
                    f"paired over {k} seeds x {n} samples (t over seeds, normal over samples)")


def directional_verdict(iv: Interval | None, margin: float = 0.0) -> bool | None:
    """Holds when the whole interval is above ``margin`` (the smallest advantage that counts,
    >= 0), does not hold when it is wholly below it (the other way, or no advantage worth the
    name); inconclusive when it straddles ``margin`` (or is missing). An exact difference
    (no randomness) holds only when above ``margin``."""
    if iv is None:
        return None
    if iv.low > margin:
        return True
    if iv.high < margin or iv.low == iv.high:
        return False
    return None


def within_verdict(iv: Interval | None, margin: float) -> bool | None:
    """"Nearly equal": holds when the whole interval lies within +-margin, does not hold when
    it lies wholly outside; inconclusive when it straddles the margin (or is missing)."""
    if iv is None:
        return None
    if -margin <= iv.low and iv.high <= margin:
        return True
    if iv.low > margin or iv.high < -margin:
        return False
    return None
