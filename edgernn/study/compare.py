"""LSTM vs GRU (vs a mixed stack), measured on the user's data: same budget for each, then
the best deployable variant of each per target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.data.datasets import Dataset, load_dataset, names
from edgernn.data.evalfile import load_eval
from edgernn.errors import EdgeRNNError
from edgernn.models.build import count_parameters
from edgernn.models.layers import format_layers, parse_layers
from edgernn.probe.metrics import PRIMARY
from edgernn.results.selection import Budget, select
from edgernn.study.claims import build_claims
from edgernn.study.records import LONG_STEPS, Comparison, Contender, target_level
from edgernn.study.training import (
    EarlyStop,
    TrainResult,
    predict,
    train_epochs,
    write_outputs,
)

__all__ = ["Comparison", "Contender", "target_level"]

CONTENDERS = ("lstm", "gru", "gru+lstm", "ensemble", "encdec")


def contenders(hidden: int, task: str = "classify",
               names: list[str] | tuple[str, ...] = CONTENDERS) -> dict[str, str]:
    """Contenders of one size class: LSTM, GRU, GRU layers then an LSTM layer, an LSTM+GRU
    ensemble (two models, predictions averaged, deployed as one file running both) and, for
    forecasting only, a GRU encoder with an LSTM decoder."""
    known = {"lstm": f"lstm:{hidden}", "gru": f"gru:{hidden}",
             "gru+lstm": f"gru:{hidden},lstm:{hidden}",
             "ensemble": f"lstm:{hidden}+gru:{hidden}", "encdec": f"gru:{hidden}/lstm:{hidden}"}
    bad = [n for n in names if n not in known]
    if bad:
        raise EdgeRNNError(f"unknown contender {bad[0]!r}; contenders: {', '.join(CONTENDERS)}")
    return {n: known[n] for n in names if n != "encdec" or task == "forecast"}


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


def long_reason(ds: Dataset) -> str | None:
    """Why ``ds`` counts as long or multi-seasonal data (where the LSTM is said to win):
    sequences of hundreds of steps or more, or a bundled dataset registered as multi-seasonal."""
    from edgernn.data.datasets import INFO

    why = []
    if ds.seq_len >= LONG_STEPS:
        why.append(f"sequences of {ds.seq_len} steps")
    domain = INFO[ds.name].domain if ds.name in INFO else ""
    if "seasonal" in domain:
        why.append(f"{domain} data")
    return " and ".join(why) or None


def checkpoint_name(name: str, seed: int, first: bool) -> str:
    """``lstm.pt`` for the first seed, ``lstm-seed1.pt`` for the others: distinct file
    names, as bench rows are named by them."""
    stem = name.replace("+", "_")
    return f"{stem}.pt" if first else f"{stem}-seed{seed}.pt"


def held_out_record(model: Any, ds: Dataset) -> dict[str, Any]:
    """The trained model's per-sample correctness (or error) on the held-out data."""
    from edgernn.results.significance import per_sample_record

    return per_sample_record(predict(model, ds.x_test), ds.y_test, ds.task)


def has_step_form(c: Contender) -> bool:
    """Whether ``export --streaming`` can make a step model of the contender (plain
    unidirectional stacks; an ensemble or encoder/decoder has none)."""
    from edgernn.model.loading import load_model
    from edgernn.model.streaming import refuse_reason

    return refuse_reason(load_model(c.checkpoint)) is None


def step_models(group: list[Contender], eval_path: Path) -> tuple[list[Path], Path]:
    """Each contender's one-step model (``export --streaming``) and the held-out data as step
    sequences [N, T, *step] with the same labels."""
    from edgernn.data.evalfile import save_eval
    from edgernn.model.loading import load_model
    from edgernn.model.streaming import make_step_model, step_data

    paths = [make_step_model(load_model(c.checkpoint), c.checkpoint.parent / "step").path
             for c in group]  # plain stacks only (see streamable)
    data = load_eval(eval_path)
    steps = eval_path.with_name(eval_path.stem.removesuffix(".eval") + ".steps.npz")
    save_eval(steps, step_data(data.x, 1), data.y, data.task)
    return paths, steps


# hidden size per bundled task, when --hidden is not given: the size class models of that task
# are built at (keyword spotting: 128, as small on-device KWS RNNs; 64 for the short sensor,
# weather and demand series; user data: 64)
TASK_HIDDEN = {"kws": 128, "sentiment": 128}
DEFAULT_HIDDEN = 64


def hidden_for(ds: Dataset, hidden: int | None) -> int:
    """The hidden size ``compare`` trains at: the user's, else the task's."""
    return hidden if hidden is not None else TASK_HIDDEN.get(ds.name, DEFAULT_HIDDEN)


@dataclass(frozen=True)
class TrainJob:
    """One dataset and one seed: every contender trained in lockstep (one process)."""

    source: str
    seed: int
    names: tuple[str, ...]
    hidden: int | None
    epochs: int
    batch_size: int
    lr: float
    max_train: int | None
    threads: int
    early_stop: EarlyStop | None
    label_seed: bool


def train_group(job: TrainJob, progress: Any = None) -> dict[str, TrainResult]:
    """Train every contender of ``job`` in lockstep, rotating who goes first each epoch (timing
    noise falls on every contender alike); a contender that stops early leaves the rotation."""
    ds = dataset_from(job.source)
    specs = {name: parse_layers(spec) for name, spec in
             contenders(hidden_for(ds, job.hidden), ds.task, job.names).items()}
    runs = {name: train_epochs(ds, sp, epochs=job.epochs, batch_size=job.batch_size, lr=job.lr,
                               seed=job.seed, max_train=job.max_train, progress=progress,
                               threads=job.threads, early_stop=job.early_stop,
                               label=f"{ds.name} {name}"
                                     + (f" seed {job.seed}" if job.label_seed else ""))
            for name, sp in specs.items()}
    last: dict[str, TrainResult] = {}
    active = list(runs)
    for epoch in range(job.epochs):
        if not active:
            break
        k = epoch % len(active)
        for name in active[k:] + active[:k]:
            try:
                last[name] = next(runs[name])
            except StopIteration:
                active.remove(name)
    return last


def _train_all(jobs: list[TrainJob], workers: int, progress: Any, metrics: dict[str, str]
               ) -> dict[tuple[str, int], dict[str, TrainResult]]:
    """Every job, in this process or on ``workers`` processes (one job per process at a time:
    each trains its contenders in lockstep, so the timing comparison stays within a process)."""
    if workers <= 1 or len(jobs) <= 1:
        return {(j.source, j.seed): train_group(j, progress) for j in jobs}
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    done: dict[tuple[str, int], dict[str, TrainResult]] = {}
    task = progress.add_task(f"training on {workers} processes", total=len(jobs)) \
        if progress is not None else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(train_group, j): j for j in jobs}
        for f in as_completed(futures):
            j = futures[f]
            done[(j.source, j.seed)] = res = f.result()
            if task is not None:
                shown = ", ".join(f"{n} {r.final.get(metrics[j.source], 0):.3f}"
                                  f" ({len(r.history)} ep)" for n, r in res.items())
                progress.update(task, advance=1,
                                description=f"trained {j.source} seed {j.seed}: {shown}")
    return done


def run_compare(
    sources: list[str], out_dir: Path, *, hidden: int | None = None, epochs: int = 10,
    seed: int = 0, batch_size: int = 64, lr: float = 3e-3, max_train: int | None = None,
    threads: int = 1,
    bench_fn: Callable[[list[Path], Path, Path], list[dict[str, Any]]] | None = None,
    budget: Budget | None = None, progress: Any = None, streaming: bool = False,
    seeds: int = 1, names: list[str] | tuple[str, ...] = CONTENDERS,
    early_stop: EarlyStop | None = None, workers: int = 1,
    dataset_seeds: dict[str, int] | None = None, bench_seeds: int | None = None,
) -> dict[str, Comparison]:
    """Train every contender on every dataset with the same budget, ``seeds`` times (seeds
    ``seed``, ``seed + 1``, ...); optionally bench each and record its best deployable variant
    per target (``bench_fn(models, data, out) -> rows``). ``hidden`` None: each task's own size
    (``TASK_HIDDEN``). ``early_stop``: each trains until its validation metric stops improving,
    ``epochs`` the cap. ``workers`` > 1 trains (dataset, seed) groups on that many processes;
    benching starts after all training. ``streaming`` benches each contender's step model (one
    time step per call, state fed back) on the same held-out sequences, judged at their last
    step (hybrids and ensembles have no step form: not benched then). ``names``: the
    contenders (``CONTENDERS``; encdec on forecasting only). ``dataset_seeds``: another
    number of seeds for some datasets (by name or source; more where training is cheap);
    ``bench_seeds``: bench only each dataset's first N seeds (benching, not training, is
    what costs on a small task; the bench claims then rest on those seeds)."""
    datasets = {src: dataset_from(src) for src in sources}
    seed_lists = seed_plan(datasets, seed, seeds, dataset_seeds or {})
    if bench_seeds is not None and bench_seeds < 1:
        raise EdgeRNNError(f"--bench-seeds must be at least 1, got {bench_seeds}")
    for ds in datasets.values():  # fail early on an unknown contender
        contenders(hidden_for(ds, hidden), ds.task, names)
    jobs = [TrainJob(src, s, tuple(names), hidden, epochs, batch_size, lr, max_train, threads,
                     early_stop, len(seed_lists[src]) > 1)
            for src in sources for s in seed_lists[src]]
    trained = _train_all(jobs, workers, progress,
                         {src: PRIMARY[ds.task] for src, ds in datasets.items()})
    results: dict[str, Comparison] = {}
    for src, ds in datasets.items():
        seed_list = seed_lists[src]
        group = []
        eval_path = out_dir / ds.name / f"{ds.name}.eval.npz"
        specs = {name: parse_layers(spec)
                 for name, spec in contenders(hidden_for(ds, hidden), ds.task, names).items()}
        for s in seed_list:
            for name, res in trained[(src, s)].items():
                ckpt = out_dir / ds.name / checkpoint_name(name, s, s == seed_list[0])
                write_outputs(ds, res, ckpt, eval_path)
                group.append(Contender(ds.name, name, format_layers(specs[name]),
                                       count_parameters(res.model), res.epoch_seconds,
                                       res.history, PRIMARY[ds.task], ckpt, seed=s,
                                       per_sample=held_out_record(res.model, ds),
                                       bench_model=ckpt.stem, best_epoch=res.best_epoch))
        n_train = min(len(ds.x_train), max_train or len(ds.x_train))
        comp = Comparison(ds.name, ds.task, PRIMARY[ds.task], ds.seq_len,
                          (n_train, len(ds.x_test)), long_reason(ds), seed_list, group,
                          augment=str(ds.augment) if ds.augment else None)
        if bench_fn is not None:
            bench_list = seed_list[:bench_seeds] if bench_seeds else seed_list
            benched = [c for c in group if (not streaming or has_step_form(c))
                       and c.seed in bench_list]
            models, data = [c.checkpoint for c in benched], eval_path
            if streaming:
                models, data = step_models(benched, eval_path)
            rows = bench_fn(models, data, out_dir / ds.name / "bench")
            comp.rows, comp.bench_seeds = rows, bench_list
            stat = (budget or Budget()).latency_stat
            for c, model in zip(benched, models, strict=True):
                c.bench_model = model.stem
                mine = [r for r in rows if r["model"] == model.stem]
                for t in sorted({r["target"] for r in mine if r["target"] != "host"}):
                    sel = select(mine, budget or Budget(), target=t)
                    if sel.pick:
                        p = sel.pick
                        lat = p.row.get("latency_ms") or {}
                        c.best[t] = {"variant": p.name, "latency_ms": p.latency,
                                     "size_bytes": p.row["size_bytes"], "value": p.value,
                                     "drop": p.drop, "emulated": bool(p.row.get("emulated")),
                                     "rtf": p.row.get("rtf"), "per_step": streaming,
                                     "trial_p50": lat.get("trial_p50") if stat == "p50"
                                     else None}
                    else:
                        c.best[t] = {"variant": None, "why": sel.explanation[0]}
        comp.claims = build_claims(comp)
        results[ds.name] = comp
    return results


def seed_plan(datasets: dict[str, Dataset], seed: int, seeds: int,
              dataset_seeds: dict[str, int]) -> dict[str, list[int]]:
    """Each source's seeds: ``seeds`` of them from ``seed`` on, or its own number from
    ``dataset_seeds`` (keyed by dataset name or source); an unknown key is refused."""
    known = {k for src, ds in datasets.items() for k in (src, ds.name)}
    unknown = sorted(set(dataset_seeds) - known)
    if unknown:
        raise EdgeRNNError(f"--dataset-seeds names {', '.join(unknown)}, which is not among the "
                           f"datasets compared ({', '.join(ds.name for ds in datasets.values())})")
    plan = {}
    for src, ds in datasets.items():
        n = dataset_seeds.get(src, dataset_seeds.get(ds.name, seeds))
        if n < 1:
            raise EdgeRNNError(f"seeds must be at least 1, got {n} for {ds.name}")
        plan[src] = [seed + k for k in range(n)]
    return plan


def compare_payload(results: dict[str, Comparison],
                    settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """``compare.json``: the run's settings, each dataset's facts, every contender of every
    seed (with the level of its seed's group) and every claim with its verdict: all that the
    decision record (``edgernn.study.decision``) is made from."""
    contenders_, claims = [], []
    for comp in results.values():
        for s in comp.seeds:
            group = comp.group(s)
            level = target_level(group)
            contenders_ += [c.to_dict(level) for c in group]
        claims += [c.to_dict() for c in comp.claims]
    seeds = next(iter(results.values())).seeds if results else []
    datasets = {name: {"task": c.task, "metric": c.metric, "seq_len": c.seq_len,
                       "samples": list(c.samples), "long_reason": c.long_reason,
                       "seeds": c.seeds, "bench_seeds": c.bench_seeds,
                       "augment": c.augment}
                for name, c in results.items()}
    return {"seeds": seeds, "settings": settings or {}, "datasets": datasets,
            "contenders": contenders_, "claims": claims}
