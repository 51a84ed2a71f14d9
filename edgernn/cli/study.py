"""The LSTM vs GRU study: compare, and decision (its decision record)."""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.cli.app import (
    FiniteFloat,
    _formats,
    _progress,
    _split,
    _table_width,
    db_option,
    err,
    out,
    trials_option,
)
from edgernn.errors import EdgeRNNError


@click.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--hidden", type=click.IntRange(1),
              help="Hidden size of every contender (one size class); default: the task's "
                   "(128 for kws and sentiment, 64 otherwise).")
@click.option("--epochs", default=60, show_default=True, type=click.IntRange(1),
              help="Most epochs each contender trains (it stops earlier when its validation "
                   "metric stops improving; see --patience).")
@click.option("--patience", default=5, show_default=True, type=click.IntRange(0),
              help="Stop a contender after N epochs without a better validation metric (a "
                   "split of the training data) and keep its best epoch; 0: train exactly "
                   "--epochs epochs on all the training data.")
@click.option("--val-share", default=0.15, show_default=True,
              type=FiniteFloat(0, 1, min_open=True, max_open=True),
              help="Share of the training data held out to validate (with --patience).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1),
              help="Train (dataset, seed) groups on N processes (each group's contenders "
                   "still train in lockstep in one process); benching starts after training.")
@click.option("--max-train", type=click.IntRange(1), help="Use only the first N training windows.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1),
              help="Train each contender N times (seeds --seed, --seed+1, ...): a claim's "
                   "verdict needs the difference to exceed the spread across seeds.")
@click.option("--dataset-seeds", "dataset_seeds_", multiple=True, metavar="NAME=N",
              help="Another number of seeds for one dataset (repeatable), e.g. motions=20: "
                   "more seeds where training is cheap narrow its intervals.")
@click.option("--bench-seeds", type=click.IntRange(1),
              help="Bench only each dataset's first N seeds (the bench claims rest on them; "
                   "training claims on every seed). Default: every seed.")
@click.option("--train-threads", default=1, show_default=True, type=click.IntRange(1),
              help="Torch threads while training (1 keeps epoch times comparable).")
@click.option("--target", "targets_", multiple=True, default=["x86"], show_default=True,
              help="Targets to bench the contenders on (repeatable); --no-bench to skip.")
@click.option("--no-bench", is_flag=True, help="Only train and compare training.")
@click.option("--contenders", "names", default="lstm,gru,gru+lstm,ensemble,encdec",
              show_default=True,
              help="Which to train: lstm, gru, gru+lstm (GRU then LSTM layer), ensemble (LSTM+GRU, "
                   "averaged, deployed as one file), encdec (GRU encoder, LSTM decoder; "
                   "forecasting only).")
@click.option("--streaming", is_flag=True,
              help="Bench each contender's step model (one step per call, state fed back).")
@click.option("--step-ms", type=FiniteFloat(0, min_open=True),
              help="With --streaming: stream time one step covers; rows get rtf.")
@click.option("--format", "fmt", default=None, help="Formats to bench (default: the target's).")
@click.option("--quantize", default=None, help="Quantizations (default: the target's).")
@click.option("--max-latency-ms", type=FiniteFloat(0, min_open=True))
@click.option("--max-size-mb", type=FiniteFloat(0, min_open=True))
@click.option("--max-drop", type=FiniteFloat())
@click.option("--runs", "min_runs", default=100, show_default=True, type=click.IntRange(1))
@click.option("--min-seconds", default=1.0, show_default=True, type=FiniteFloat(0))
@trials_option
@click.option("--out", "out_dir", default="edgernn-compare", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@db_option
def compare(data: tuple[str, ...], hidden: int | None, epochs: int, patience: int,
            val_share: float, jobs: int, max_train: int | None, seed: int, seeds: int,
            train_threads: int, targets_: tuple[str, ...], no_bench: bool, names: str,
            streaming: bool, step_ms: float | None, fmt: str | None, quantize: str | None,
            max_latency_ms: float | None, max_size_mb: float | None, max_drop: float | None,
            min_runs: int, min_seconds: float, trials: int, out_dir: Path,
            json_path: Path | None, db: str | None, dataset_seeds_: tuple[str, ...] = (),
            bench_seeds: int | None = None) -> None:
    """LSTM vs GRU vs GRU+LSTM on DATA (bundled dataset names or .npz files): same training
    budget, then each one's best deployable variant per target, and the folk claims about
    them (fewer parameters, faster training and inference, nearly equal accuracy) with
    verdicts."""
    import json

    from edgernn.api import bench as api_bench
    from edgernn.convert.quantize import MODES
    from edgernn.measure.bench import BenchSettings
    from edgernn.results.selection import Budget
    from edgernn.results.store import open_store
    from edgernn.results.table import compare_table
    from edgernn.study.claims import claims_table
    from edgernn.study.compare import CONTENDERS, compare_payload, run_compare, target_level
    from edgernn.study.conditions import conditions, conditions_text
    from edgernn.study.training import EarlyStop

    budget = Budget(max_latency_ms, max_size_mb, max_drop)
    dataset_seeds = _dataset_seeds(dataset_seeds_)
    # no torch-int8-dynamic peer rows: PyTorch on the host is no contender's deployable
    # variant, and the peer's timing trials cost a quarter of a dynamic-int8 bench
    settings = BenchSettings(
        store=open_store(db), min_runs=min_runs, min_seconds=min_seconds, trials=trials,
        formats=_formats(fmt), step_ms=step_ms, peer=False,
        modes=_split(quantize, list(MODES), "quantization") if quantize else None)
    for t in targets_:
        from edgernn.runners.target import load_target

        load_target(t)  # fail early on a bad target name

    def bench_fn(models: list[Path], data_path: Path, work: Path) -> list[dict]:
        rows: list[dict] = []
        for t in targets_:
            with err.status(f"bench on {t}") as st:
                rows += api_bench(models, t, data_path, work / t, settings,
                                  on_step=lambda m: st.update(m))
        return rows

    with _progress() as progress:
        results = run_compare(list(data), out_dir, hidden=hidden, epochs=epochs, seed=seed,
                              max_train=max_train, threads=train_threads,
                              bench_fn=None if no_bench else bench_fn,
                              budget=budget, progress=progress, streaming=streaming,
                              seeds=seeds, names=_split(names, list(CONTENDERS), "contender"),
                              early_stop=EarlyStop(patience, val_share) if patience else None,
                              workers=jobs, dataset_seeds=dataset_seeds,
                              bench_seeds=bench_seeds)
    facts = conditions(train_threads, jobs)
    from edgernn.study.decision import decision_markdown

    for ds, comp in results.items():
        out.print(compare_table(ds, comp.first, target_level(comp.first)),
                  width=_table_width(False))
        out.print(claims_table(comp, comp.claims, conditions_text(facts)),
                  width=_table_width(False))
    payload = compare_payload(results, {
        "hidden": hidden, "epochs": epochs, "patience": patience, "val_share": val_share,
        "jobs": jobs, "max_train": max_train, "conditions": facts,
        "dataset_seeds": dataset_seeds, "bench_seeds": bench_seeds,
        "targets": [] if no_bench else list(targets_),
        "budget": {"max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb,
                   "max_drop": max_drop}})
    dest = json_path or out_dir / "compare.json"
    dest.write_text(json.dumps(payload, indent=2, default=str))
    record = dest.with_name("decision.md")
    record.write_text(decision_markdown(json.loads(dest.read_text())))
    out.print(f"wrote {dest} and {record}")


@click.command()
@click.argument("compare_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write (default: decision.md beside COMPARE_JSON).")
def decision(compare_json: Path, out_path: Path | None) -> None:
    """Rebuild the decision record (decision.md) from a compare.json."""
    from edgernn.limits import load_json
    from edgernn.results.files import write_text
    from edgernn.study.decision import decision_markdown

    payload = load_json(compare_json, "compare file")
    not_ours = f"{compare_json} is not a compare.json written by edgernn compare"
    if not isinstance(payload, dict) or not isinstance(payload.get("datasets", {}), dict):
        raise EdgeRNNError(f"{not_ours} (it holds a JSON {type(payload).__name__}, not an "
                           "object with 'datasets'); run edgernn compare to make one")
    try:
        text = decision_markdown(payload)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, ZeroDivisionError) as e:
        raise EdgeRNNError(f"{not_ours} ({type(e).__name__}: {e}"[:300] + ")") from None
    dest = out_path or compare_json.with_name("decision.md")
    write_text(dest, text, inputs=[compare_json])
    out.print(f"wrote {dest}")


def _dataset_seeds(items: tuple[str, ...]) -> dict[str, int]:
    """``--dataset-seeds NAME=N`` items as {name: N}; a malformed item is one line."""
    out: dict[str, int] = {}
    for item in items:
        name, eq, n = item.partition("=")
        if not eq or not name.strip() or not n.strip().isdecimal() or int(n) < 1:
            raise EdgeRNNError(f"--dataset-seeds {item!r}: expected NAME=N with N >= 1 "
                               "(e.g. motions=20)")
        out[name.strip()] = int(n)
    return out
