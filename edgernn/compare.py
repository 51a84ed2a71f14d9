"""LSTM vs GRU (vs a mixed stack), measured on the user's data: same budget for each, then
the best deployable variant of each per target."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.data.datasets import Dataset, load_dataset, names
from edgernn.data.evalfile import load_eval
from edgernn.errors import EdgeRNNError
from edgernn.models.layers import format_layers, parse_layers
from edgernn.models.sequence import count_parameters
from edgernn.probe.metrics import HIGHER_IS_BETTER, PRIMARY
from edgernn.select import Budget, select
from edgernn.training import train_epochs, write_outputs


def contenders(hidden: int) -> dict[str, str]:
    """LSTM and GRU of one size class, and GRU layers followed by an LSTM layer."""
    return {"lstm": f"lstm:{hidden}", "gru": f"gru:{hidden}",
            "gru+lstm": f"gru:{hidden},lstm:{hidden}"}


def dataset_from(source: str, split: float = 0.8) -> Dataset:
    """A bundled dataset by name, or a user ``.npz`` (x, y; sample-first, time-ordered), split
    chronologically into training and held-out parts."""
    if source in names():
        return load_dataset(source)
    p = Path(source)
    if p.suffix != ".npz":
        raise EdgeRNNError(f"{source!r} is neither a bundled dataset ({', '.join(names())}) nor "
                           "an .npz file with x and y")
    data = load_eval(p)
    x, y = data.x, data.y
    if len(x) < 10:
        raise EdgeRNNError(f"{p} has {len(x)} samples; comparing needs at least 10")
    cut = int(len(x) * split)
    tokens = x.dtype.kind in "iu"
    if data.task == "classify":
        extra = {"num_classes": int(y.max()) + 1}
    else:
        y = y.reshape(len(y), -1).astype(np.float32)
        extra = {"horizon": int(y.shape[1])}
    return Dataset(
        p.stem, data.task, x[:cut], y[:cut], x[cut:], y[cut:],
        f"user data {p} ({len(x)} samples, first {cut} for training)", real=True,
        vocab_size=int(x.max()) + 1 if tokens else None,
        **extra,
    )


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

    @property
    def final(self) -> float:
        return self.history[-1][self.metric]

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
                "final": self.final, "target_level": level,
                "epochs_to_target": self.epochs_to(level), "history": self.history,
                "checkpoint": str(self.checkpoint), "best_variant": self.best}


def step_models(group: list[Contender], eval_path: Path) -> tuple[list[Path], Path]:
    """Each contender's one-step model (``export --streaming``) and the held-out data as step
    sequences [N, T, *step] with the same labels."""
    from edgernn.data.evalfile import save_eval
    from edgernn.loading import load_model
    from edgernn.streaming import make_step_model, step_data

    paths = [make_step_model(load_model(c.checkpoint), c.checkpoint.parent / "step").path
             for c in group]
    data = load_eval(eval_path)
    steps = eval_path.with_name(eval_path.stem.removesuffix(".eval") + ".steps.npz")
    save_eval(steps, step_data(data.x, 1), data.y, data.task)
    return paths, steps


def target_level(group: list[Contender]) -> float:
    """The metric level every contender reaches at some epoch (the weakest best-ever), so
    'epochs to target' compares how fast each gets there."""
    metric = group[0].metric
    better = HIGHER_IS_BETTER[metric]
    bests = [max(h[metric] for h in c.history) if better else min(h[metric] for h in c.history)
             for c in group]
    return min(bests) if better else max(bests)


def run_compare(
    sources: list[str], out_dir: Path, *, hidden: int = 64, epochs: int = 10, seed: int = 0,
    batch_size: int = 64, lr: float = 3e-3, max_train: int | None = None, threads: int = 1,
    bench_fn: Callable[[list[Path], Path, Path], list[dict[str, Any]]] | None = None,
    budget: Budget | None = None, progress: Any = None, streaming: bool = False,
) -> dict[str, list[Contender]]:
    """Train every contender on every dataset with the same budget; optionally bench each and
    record its best deployable variant per target (``bench_fn(models, data, out) -> rows``).
    ``streaming`` benches each contender's step model (one time step per call, state fed
    back) on the same held-out sequences, judged at their last step."""
    results: dict[str, list[Contender]] = {}
    for src in sources:
        ds = dataset_from(src)
        group = []
        eval_path = out_dir / ds.name / f"{ds.name}.eval.npz"
        specs = {name: parse_layers(spec) for name, spec in contenders(hidden).items()}
        runs = {name: train_epochs(ds, sp, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, max_train=max_train, progress=progress,
                                   threads=threads,
                                   label=f"{ds.name} {name}")
                for name, sp in specs.items()}
        last: dict[str, Any] = {}
        # lockstep, rotating who goes first: timing noise falls on every contender alike
        for epoch in range(epochs):
            names_ = list(runs)
            k = epoch % len(names_)
            for name in names_[k:] + names_[:k]:
                last[name] = next(runs[name])
        for name, res in last.items():
            ckpt = out_dir / ds.name / f"{name.replace('+', '_')}.pt"
            write_outputs(ds, res, ckpt, eval_path)
            group.append(Contender(ds.name, name, format_layers(specs[name]),
                                   count_parameters(res.model), res.epoch_seconds, res.history,
                                   PRIMARY[ds.task], ckpt))
        if bench_fn is not None:
            models, data = [c.checkpoint for c in group], eval_path
            if streaming:
                models, data = step_models(group, eval_path)
            rows = bench_fn(models, data, out_dir / ds.name / "bench")
            for c, model in zip(group, models, strict=True):
                mine = [r for r in rows if r["model"] == model.stem]
                for t in sorted({r["target"] for r in mine if r["target"] != "host"}):
                    sel = select(mine, budget or Budget(), target=t)
                    if sel.pick:
                        p = sel.pick
                        c.best[t] = {"variant": p.name, "latency_ms": p.latency,
                                     "size_bytes": p.row["size_bytes"], "value": p.value,
                                     "drop": p.drop, "emulated": bool(p.row.get("emulated")),
                                     "rtf": p.row.get("rtf"), "per_step": streaming}
                    else:
                        c.best[t] = {"variant": None, "why": sel.explanation[0]}
        results[ds.name] = group
    return results
