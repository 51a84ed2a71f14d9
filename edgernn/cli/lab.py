"""Many runs at once: sweep (on Ray) and demo (train and bench the bundled example)."""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.cli.app import _table_width, db_option, err, out
from edgernn.cli.data import train
from edgernn.cli.measure import bench
from edgernn.errors import EdgeRNNError


@click.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--address", help="A Ray cluster to run on (host:port of its head); default: start "
              "Ray on this machine with the sweep's devices as resources.")
@db_option
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path),
              help="Exports by content hash, shared by every node (default: the sweep file's "
                   "'artifacts', else .edgernn-sweep/ beside it).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where results.json/csv go (default: the artifacts directory).")
@click.option("--cpus", type=click.IntRange(1), help="CPUs of a Ray started here (default: all).")
@click.option("--wide", is_flag=True, help="Show every column (default fits 120 columns).")
def sweep(sweep_file: Path, address: str | None, db: str | None, artifacts: Path | None,
          out_dir: Path | None, cpus: int | None, wide: bool) -> None:
    """Run SWEEP_FILE on Ray: every model x variant x device; resumable, one task per device."""
    import json

    from edgernn.lab.engine import SweepInterrupted, run_sweep
    from edgernn.lab.sweep_file import load_sweep
    from edgernn.results.files import ResultWriter
    from edgernn.results.store import default_path, open_store
    from edgernn.results.table import bench_table

    spec = load_sweep(sweep_file)
    db = db or spec.db or str(default_path())
    store = open_store(db)  # fail here, before Ray starts, when the store cannot be opened
    where = store.path
    store.close()
    artifacts = (artifacts or spec.artifacts or sweep_file.resolve().parent / ".edgernn-sweep")
    artifacts.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir or artifacts
    writer = ResultWriter(out_dir / "results.json", out_dir / "results.csv")
    try:
        result = run_sweep(spec, db, artifacts.resolve(), err, address=address, cpus=cpus)
    except SweepInterrupted as stop:  # the rows finished before Ctrl-C still reach the files
        writer.rows = list(stop.rows)
        writer.flush()
        err.print(f"rows finished before the interrupt: {writer.json_path} {writer.csv_path}",
                  highlight=False)
        raise
    for r in result.rows:
        writer.add(r)
    shown = [r for r in result.rows if r.get("latency_ms") is not None or r["status"] != "ok"]
    if shown:
        out.print(bench_table(shown, title=f"sweep: {len(shown)} row(s)", wide=wide,
                              width=_table_width(wide)), width=_table_width(wide))
    out.print(result.progress.table(), width=_table_width(wide))
    reused = sum(1 for r in result.rows if r.get("reused"))
    out.print(f"{result.tasks} task(s) in {result.seconds:.0f} s; rows: {writer.json_path} "
              f"{writer.csv_path}; store: {where}"
              + (f" ({reused} row(s) reused, measured earlier)" if reused else ""), highlight=False)
    for dev, why in result.retired.items():
        out.print(f"device {dev} left the rotation: {why}", highlight=False)
    (out_dir / "sweep.json").write_text(json.dumps({
        "tasks": result.tasks, "seconds": round(result.seconds, 2), "store": where,
        "lanes": {k: {"done": c.done, "reused": c.reused, "failed": c.failed,
                      "busy_s": round(c.busy_s, 2)} for k, c in result.progress.lanes.items()},
        "failures": result.failures, "retired": result.retired}, indent=2, default=str))
    if result.failures:
        raise EdgeRNNError(f"{len(result.failures)} of {result.tasks} task(s) failed "
                           f"({result.failures[0]}); finished rows are in {where}: run the same "
                           "command again to finish the rest")


@click.command()
@click.option("--out", "out_dir", default="runs/demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--epochs", default=15, show_default=True, type=click.IntRange(1))
@click.option("--dataset", default="weather", show_default=True)
@click.pass_context
def demo(ctx: click.Context, out_dir: Path, epochs: int, dataset: str) -> None:
    """The main job on the bundled example: train an LSTM and a GRU, bench every variant."""
    for layers, name in (("lstm:128", "lstm"), ("gru:128", "gru")):
        ctx.invoke(train, dataset=dataset, layers=layers, epochs=epochs, batch_size=64, lr=3e-3,
                   seed=0, max_train=None, out_path=out_dir / f"{name}.pt",
                   eval_out=out_dir / f"{dataset}.eval.npz")
    ctx.invoke(bench, models=(out_dir / "lstm.pt", out_dir / "gru.pt"), target="x86",
               data_path=out_dir / f"{dataset}.eval.npz", fmt=None, quantize=None, threads=None,
               min_runs=200, min_seconds=1.0, warmup=20, eval_batch=1, collapse=0.10,
               out_dir=out_dir / "bench", json_path=None, csv_path=None, calib=None,
               force=False, trials=3, step_ms=None, wide=False, all_notes=False,
               max_drop=None, per_op=False,
               tune=False, db=None, strict=False,
               trust_pickle=False, imports=(), input_shape=None, input_dtype=None, task=None,
               inputs=(), states=())
