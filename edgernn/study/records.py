"""The LSTM-vs-GRU study's records: each contender as trained and benched, and one dataset's
comparison. The driver (``compare``) fills them; ``claims`` judges them; ``decision`` and the
tables read them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgernn.probe.metrics import HIGHER_IS_BETTER

LONG_STEPS = 200  # "very long sequences": hundreds to thousands of steps (short: < 100)


@dataclass
class Contender:
    dataset: str
    name: str
    layers: str
    parameters: int
    epoch_seconds: list[float]
    history: list[dict[str, float]]
    metric: str
    checkpoint: Path
    best: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> pick summary
    seed: int = 0
    per_sample: dict[str, Any] | None = None  # held-out correctness / errors (significance)
    bench_model: str = ""  # the model name its bench rows carry
    best_epoch: int | None = None  # early stopping: the epoch kept (1-based); None: the last

    @property
    def final_metrics(self) -> dict[str, float]:
        """The held-out metrics of the model kept (the best validation epoch, else the last)."""
        return self.history[(self.best_epoch or len(self.history)) - 1]

    @property
    def final(self) -> float:
        return self.final_metrics[self.metric]

    @property
    def epochs_used(self) -> int:
        return self.best_epoch or len(self.history)

    @property
    def s_per_epoch(self) -> float:
        return statistics.median(self.epoch_seconds)

    @property
    def s_per_epoch_min(self) -> float:
        """Least affected by other load on the machine: the intrinsic cost."""
        return min(self.epoch_seconds)

    def epochs_to(self, level: float) -> int | None:
        better = HIGHER_IS_BETTER[self.metric]
        for i, h in enumerate(self.history):
            if (h[self.metric] >= level) if better else (h[self.metric] <= level):
                return i + 1
        return None

    def to_dict(self, level: float) -> dict[str, Any]:
        return {"dataset": self.dataset, "contender": self.name, "layers": self.layers,
                "parameters": self.parameters, "seconds_per_epoch": self.s_per_epoch,
                "seconds_per_epoch_min": self.s_per_epoch_min,
                "epoch_seconds": self.epoch_seconds, "metric": self.metric,
                "final": self.final, "final_metrics": self.final_metrics,
                "epochs_used": self.epochs_used, "epochs_run": len(self.history),
                "target_level": level,
                "epochs_to_target": self.epochs_to(level), "history": self.history,
                "checkpoint": str(self.checkpoint), "best_variant": self.best,
                "seed": self.seed, "per_sample": self.per_sample}


@dataclass
class Comparison:
    """One dataset's contenders, every seed, with their bench rows."""

    dataset: str
    task: str
    metric: str
    seq_len: int
    samples: tuple[int, int]  # training (as used), held-out
    long_reason: str | None  # why the data counts as long / multi-seasonal, or None
    seeds: list[int]
    contenders: list[Contender]
    rows: list[dict[str, Any]] = field(default_factory=list)
    bench_seeds: list[int] = field(default_factory=list)  # the seeds whose models were benched
    augment: str | None = None  # the training augmentation (the dataset's own), if any
    claims: list[Any] = field(default_factory=list)  # judged by the caller (claims.build_claims)

    def group(self, seed: int) -> list[Contender]:
        return [c for c in self.contenders if c.seed == seed]

    @property
    def first(self) -> list[Contender]:
        """The first seed's contenders (the per-contender table shows these)."""
        return self.group(self.seeds[0])


def target_level(group: list[Contender]) -> float:
    """The metric level the LSTM and the GRU (every contender when either is missing) reach at
    some epoch (the weakest best-ever), so 'epochs to target' compares how fast each gets
    there; hybrids and ensembles do not move the level the folk claims are judged at."""
    pair = [c for c in group if c.name in ("lstm", "gru")]
    group = pair if len(pair) == 2 else group
    metric = group[0].metric
    better = HIGHER_IS_BETTER[metric]
    bests = [max(h[metric] for h in c.history) if better else min(h[metric] for h in c.history)
             for c in group]
    return min(bests) if better else max(bests)
