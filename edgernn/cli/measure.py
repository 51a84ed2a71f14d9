"""The bench command and its helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgernn.cli.app import (
    FiniteFloat,
    _formats,
    _load_kwargs,
    _opt_in,
    _split,
    _table_width,
    calib_option,
    check_outcome,
    db_option,
    err,
    load_options,
    max_drop_option,
    out,
    strict_option,
    trials_option,
    variant_options,
)
from edgernn.errors import EdgeRNNError


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--target", default="x86", show_default=True, help="Target name or .yaml path.")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Evaluation data (.npz with x and y).")
@click.option("--format", "fmt", default=None, help="Formats to bench (default: the target's).")
@click.option("--quantize", default=None, help="Quantizations (default: the target's).")
@click.option("--threads", type=click.IntRange(1), help="Inference threads (default: target's).")
@click.option("--runs", "min_runs", default=100, show_default=True, type=click.IntRange(1),
              help="Minimum timed runs per variant (after warm-up).")
@click.option("--min-seconds", default=1.0, show_default=True, type=FiniteFloat(0),
              help="Keep timing each variant at least this long.")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0))
@click.option("--eval-batch", default=1, show_default=True, type=click.IntRange(1),
              help="Evaluation batch size where a variant accepts batches (1 = as deployed).")
@click.option("--collapse", default=0.10, show_default=True, type=FiniteFloat(0),
              help="Relative metric degradation that marks a variant 'accuracy collapsed'.")
@click.option("--out", "out_dir", default="edgernn-bench", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Working directory.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rows as JSON (default: OUT/results.json).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rows as CSV (default: OUT/results.csv).")
@click.option("--force", is_flag=True, help="Measure again even what the store already has.")
@trials_option
@click.option("--step-ms", type=FiniteFloat(0, min_open=True), default=None,
              help="Stream time one call of a step model covers (e.g. 36 for 576 samples at "
                   "16 kHz): rows get rtf = p50 / MS and rtf_p99.")
@click.option("--wide", is_flag=True, help="Show every column (default fits 120 columns).")
@click.option("--notes", "all_notes", is_flag=True,
              help="Show every footnote in full (default: the first ones, one line each).")
@click.option("--metric-fn", metavar="FILE.py:NAME|MODULE:NAME|NAME",
              help="Judge every variant by your metric: fn(y_true, y_pred) -> float over the "
                   "evaluation set, run on this host over the outputs each probe sends back "
                   "(extra parameters get the --data arrays of their name). Built-in NAMEs: mae, "
                   "mse, frame_accuracy, frame_f1, snr_gain (mask x noisy vs clean).")
@click.option("--higher-is-better/--lower-is-better", "higher_is_better", default=None,
              help="Direction of --metric-fn (default: the function's higher_is_better).")
@click.option("--judge-output", metavar="NAME|INDEX",
              help="The model output y judges when it has several (default: the data's "
                   "meta['output'], else the first prediction output).")
@max_drop_option
@variant_options
@db_option
@calib_option
@strict_option
@load_options
def bench(models: tuple[Path, ...], target: str, data_path: Path, fmt: str | None,
          quantize: str | None, threads: int | None, min_runs: int, min_seconds: float,
          warmup: int, eval_batch: int, collapse: float, out_dir: Path, json_path: Path | None,
          csv_path: Path | None, calib: Path | None, force: bool, trials: int,
          step_ms: float | None, wide: bool, all_notes: bool, metric_fn: str | None,
          higher_is_better: bool | None, judge_output: str | None, max_drop: float | None,
          per_op: bool, tune: bool, db: str | None, strict: bool, **kw: Any) -> None:
    """Export, run and evaluate every variant of MODELS on a target; print one table and the
    verdict: per model the variant to ship, as select picks it, and how the models compare."""
    from edgernn.api import bench as api_bench
    from edgernn.convert.quantize import MODES
    from edgernn.measure.bench import BenchSettings
    from edgernn.metrics.user import load_metric_fn
    from edgernn.results.files import ResultWriter
    from edgernn.results.selection import op_decisions
    from edgernn.results.store import open_store
    from edgernn.results.table import bench_table

    if higher_is_better is not None and metric_fn is None:
        raise EdgeRNNError("--higher-is-better / --lower-is-better say the direction of "
                           "--metric-fn; pass --metric-fn too")
    metric = load_metric_fn(metric_fn, higher_is_better) if metric_fn else None
    store = open_store(db)
    settings = BenchSettings(
        metric_fn=metric, judged_output=judge_output,
        store=store, force=force, threads=threads, warmup=warmup, min_runs=min_runs,
        min_seconds=min_seconds, eval_batch=eval_batch, trials=trials,
        collapse=collapse, load_options=_load_kwargs(kw), step_ms=step_ms, max_drop=max_drop,
        opt_in=_opt_in(per_op, tune),
        formats=_formats(fmt), calib_path=calib,
        modes=_split(quantize, list(MODES), "quantization") if quantize else None,
    )
    writer = ResultWriter(json_path or out_dir / "results.json", csv_path or out_dir / "results.csv",
                          inputs=[*models, data_path, *([calib] if calib else [])])
    try:
        with err.status("bench") as st:
            api_bench(list(models), target, data_path, out_dir, settings, writer.add,
                      on_step=lambda m: st.update(m))
    finally:
        if writer.rows:
            width = _table_width(wide)
            out.print(bench_table(writer.rows, title=_bench_title(writer.rows), wide=wide,
                                  width=width, notes=all_notes), width=width)
            for line in op_decisions(writer.rows, max_drop=settings.max_drop):
                out.print(line, highlight=False, width=width)
            reused = sum(1 for r in writer.rows if r.get("reused"))
            out.print(f"rows: {writer.json_path} {writer.csv_path}; store: {store.path}"
                      + (f" ({reused} row(s) reused from the store, measured earlier with the same "
                         "settings; --force re-measures)"
                         if reused else ""), highlight=False)
    if writer.rows:
        print_verdict(writer.rows, max_drop, writer.json_path.with_name("verdict.json"))
    check_outcome([r["status"] for r in writer.rows if not _is_baseline(r)], strict, "bench")


def print_verdict(rows: list[dict[str, Any]], max_drop: float | None, path: Path) -> None:
    """The verdict block (``results.verdict``) after the table, and as JSON in ``path``."""
    import json

    from edgernn.results.selection import Budget
    from edgernn.results.verdict import verdict, verdict_block

    v = verdict(rows, Budget(max_drop=max_drop))
    out.print()
    for line in verdict_block(v):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    path.write_text(json.dumps(v.to_dict(), indent=2, default=str))
    out.print(f"verdict: {path}", highlight=False)


def _is_baseline(row: dict[str, Any]) -> bool:
    from edgernn.measure.bench import BASELINE

    return row["variant"].endswith("/" + BASELINE)


def _bench_title(rows: list[dict[str, Any]]) -> str:
    dev = next((r["device"] for r in rows if r.get("device") and r["target"] != "host"), None)
    dev = dev or next((r["device"] for r in rows if r.get("device")), {}) or {}
    threads = next((r["threads"] for r in rows if r.get("threads")), "?")
    emulated = any(r.get("emulated") for r in rows)
    target = next((r["target"] for r in rows if r["target"] != "host"), "host")
    return (f"target {target}{' (EMULATED: timings are not device latency)' if emulated else ''}: "
            f"{dev.get('cpu_model', '?')} ({dev.get('machine', '?')}), {threads} thread(s); "
            "latency batch 1 after warm-up")
