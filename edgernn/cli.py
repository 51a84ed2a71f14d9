"""The ``edgernn`` command line: a thin click face over the library."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edgernn.errors import EdgeRNNError

# tables are wide: when output is not a terminal, do not squeeze them into 80 columns
out = Console(width=None if sys.stdout.isatty() else 320)
err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=err, transient=False)


def max_drop_option(f: Callable) -> Callable:
    return click.option(
        "--max-drop", type=click.FloatRange(0), default=None,
        help="Accuracy-aware int8: when all-int8 loses more than this (metric units; without "
             "labels, the share of changed predictions), add an int8-mixed variant keeping the "
             "most sensitive ops float until it fits.")(f)


def variant_options(f: Callable) -> Callable:
    """Opt-in groups of extra quantized variants, each measured beside int8-dynamic."""
    f = click.option("--tune", is_flag=True,
                     help="Also try other quantization settings (ONNX: per-channel, asymmetric "
                          "uint8, 7-bit weights; TFLite: weight-only, per-tensor) and say which "
                          "is best on the target.")(f)
    return click.option("--per-op", is_flag=True,
                        help="Measure every quantizable op class (recurrent, MatMul/Gemm, "
                             "Embedding; Conv always) kept fp32 vs int8 and say which to keep.")(f)


def _opt_in(per_op: bool, tune: bool) -> frozenset[str]:
    return frozenset(g for g, on in (("per-op", per_op), ("tune", tune)) if on)


def load_options(f: Callable) -> Callable:
    """Options that say how to read a model file."""
    f = click.option("--task", type=click.Choice(["classify", "forecast"]),
                     help="Task when the file does not say (default: from the data).")(f)
    f = click.option("--input-dtype", type=click.Choice(["float32", "int64", "int32"]),
                     help="Input dtype when the file carries no input spec.")(f)
    f = click.option("--input-shape", metavar="SHAPE",
                     help="Input shape when the file carries none, e.g. batch=1,seq=64,4 "
                          "(named axes are dynamic).")(f)
    f = click.option("--state", "states", multiple=True, metavar="INPUT=OUTPUT",
                     help="Repeatable: output OUTPUT (index or name) is the next step's INPUT "
                          "(default: inputs paired with outputs of the same shape).")(f)
    f = click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
                     help="Repeatable, in forward's order, for models with several inputs, e.g. "
                          "--input x:batch=1,576 --input state:2,batch=1,128.")(f)
    f = click.option("--import", "imports", multiple=True, metavar="MODULE",
                     help="Module or .py file defining the classes of a trusted pickle.")(f)
    f = click.option("--trust-pickle", is_flag=True,
                     help="Allow loading a pickled nn.Module (can run arbitrary code).")(f)
    return f


def _load_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("trust_pickle", "imports", "input_shape", "input_dtype", "task", "inputs", "states")
    return {k: kw.pop(k) for k in keys}


def _split(value: str, allowed: list[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if "all" in items:
        return list(allowed)
    # fp32 is always exported: "none" adds nothing, alone or in a list
    items = [v for v in items if v != "none"]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise EdgeRNNError(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)}, all")
    return items


def _formats(value: str | None) -> list[str] | None:
    """Format plug-in or family names; ``all`` means every registered plug-in."""
    from edgernn.convert.formats import FORMATS, expand_formats

    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return sorted(FORMATS) if "all" in items else expand_formats(items)


db_option = click.option(
    "--db", metavar="PATH|URL",
    help="Results store: a SQLite file or a postgresql:// URL (a store several people and a "
         "sweep's workers share). Default: $EDGERNN_DB or ~/.local/share/edgernn/results.db.")

trials_option = click.option(
    "--trials", default=3, show_default=True, type=click.IntRange(1),
    help="Timing trials per variant, each in a fresh process, interleaved across variants; "
         "latency is the median of the trial medians (--runs and --min-seconds are split "
         "across them).")

strict_option = click.option(
    "--strict", is_flag=True,
    help="Exit 1 when any requested variant failed (default: only when none is ok).")

calib_option = click.option(
    "--calib", type=click.Path(path_type=Path),
    help="Calibration inputs for full-int8 quantization: .npz with x (sample axis first; "
         "y not needed). Default: evenly spaced samples of --data.")


@click.group()
@click.version_option(package_name="edgernn")
def cli() -> None:
    """Export, quantize and profile LSTM/GRU models on edge targets; pick what to ship."""


@cli.command()
@click.option("--stream", metavar="NAME", help="Write NAME's held-out data as step streams with a "
              "label per step (for step models) to --out.")
@click.option("--steps", default=28, show_default=True, type=click.IntRange(2),
              help="Steps per stream (with --stream).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where --stream writes its .npz (x [N, steps, features], y [N, steps]).")
def datasets(stream: str | None, steps: int, out_path: Path | None) -> None:
    """List the bundled datasets (or write one as per-step labelled streams)."""
    from edgernn.data.datasets import STREAMS, info, load_dataset, names

    escape = rich_escape

    if stream:
        from edgernn.data.evalfile import save_eval

        if stream not in STREAMS:
            raise EdgeRNNError(f"no stream form of {stream!r}; streams: {', '.join(STREAMS)}")
        if out_path is None:
            raise EdgeRNNError("--stream needs --out FILE.npz")
        x, y, what = STREAMS[stream](steps)
        save_eval(out_path, x, y, "classify", description=what)
        out.print(f"wrote {out_path}: x {list(x.shape)}, y {list(y.shape)}; {what}",
                  highlight=False)
        return
    for n in names():
        meta = info(n)
        try:
            ds = load_dataset(n)
        except EdgeRNNError as e:  # files not fetched: list it with the fix
            out.print(f"[bold]{n}[/] ({meta.domain}; not available: {escape(str(e))})")
            continue
        kind = "real" if ds.real else "synthetic"
        shape = f"seq {ds.seq_len}" + (", variable length, front-padded"
                                       if getattr(ds, "lengths_train", None) is not None else "")
        domain = f"{meta.domain}, " if meta.domain and meta.domain != kind else ""
        out.print(f"[bold]{n}[/] ({domain}{kind}, {ds.task}, {len(ds.x_train)}+"
                  f"{len(ds.x_test)} windows, {shape}): {escape(ds.description)}")
        if ds.source or ds.license:
            out.print(f"    source: {escape(ds.source or '?')}; license: {escape(ds.license or '?')}",
                      highlight=False)


@cli.command()
@click.option("--dataset", default="weather", show_default=True, help="Bundled dataset.")
@click.option("--data", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Train on your own CSV of sentences and labels instead (a BPE tokenizer is "
                   "trained on its training rows and written beside OUT as .tokenizer.json).")
@click.option("--text-column", default="text", show_default=True, help="With --data: text column.")
@click.option("--label-column", default="label", show_default=True,
              help="With --data: label column.")
@click.option("--vocab-size", default=2000, show_default=True, type=click.IntRange(8),
              help="With --data: tokenizer vocabulary size.")
@click.option("--seq-len", type=click.IntRange(1),
              help="With --data: tokens per sentence (default: the 95th percentile, up to 256).")
@click.option("--layers", default="lstm:64", show_default=True,
              help="Recurrent stack, e.g. gru:128,lstm:128 or bilstm:64x2; an encoder/decoder "
             "forecaster gru:64/lstm:64; an ensemble lstm:64+gru:64 (members trained "
             "separately, predictions averaged).")
@click.option("--epochs", default=15, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-train", type=click.IntRange(1), help="Use only the first N training windows.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.pt).")
@click.option("--eval-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Held-out evaluation file (default: OUT with .eval.npz).")
def train(dataset: str, csv_path: Path | None, text_column: str, label_column: str,
          vocab_size: int, seq_len: int | None, layers: str, epochs: int, batch_size: int,
          lr: float, seed: int, max_train: int | None, out_path: Path,
          eval_out: Path | None) -> None:
    """Train a reference classifier or forecaster on a bundled dataset or your CSV of text."""
    from edgernn.api import train_model

    source: Any = dataset
    if csv_path is not None:
        from edgernn.data.text import from_csv

        source = from_csv(csv_path, text_column, label_column, vocab_size=vocab_size,
                          seq_len=seq_len, seed=seed)
    eval_out = eval_out or out_path.with_suffix(".eval.npz")
    with _progress() as progress:
        res = train_model(source, layers, out_path, eval_out, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, max_train=max_train,
                          progress=progress)
    final = ", ".join(f"{k} {v:.4f}" for k, v in res.final.items())
    per = sum(res.epoch_seconds) / len(res.epoch_seconds)
    out.print(f"wrote {out_path} ({sum(p.numel() for p in res.model.parameters())} parameters, "
              f"{per:.2f} s/epoch; held-out {final}) and {eval_out}"
              + (f"; tokenizer {res.tokenizer_path}" if res.tokenizer_path else ""))


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="Also check that this evaluation data fits the model.")
@load_options
def inspect(model: Path, data_path: Path | None, **kw: Any) -> None:
    """Load MODEL safely and show what it is: kind, input spec, recurrent layers, parameters."""
    from edgernn.data.evalfile import check_targets, load_eval
    from edgernn.measure.bench import model_classes
    from edgernn.measure.inputs import fit_data, per_step
    from edgernn.model.loading import load_model

    lm = load_model(model, **_load_kwargs(kw))
    out.print(f"[bold]{lm.path}[/] ({lm.kind}, sha256 {lm.sha256[:16]}...)")
    sig = lm.sig
    for t in sig.inputs:
        out.print(f"  input {t}" + (" (state)" if t.role == "state" else ""), highlight=False,
                  markup=False)
    for t in sig.outputs:
        out.print(f"  output {t}" + (" (state)" if t.role == "state" else ""), highlight=False,
                  markup=False)
    for i, o in sig.state.items():
        how = "by equal shape" if sig.paired == "shape" else "as given"
        out.print(f"  state: {o} feeds {i} at the next step ({how})", highlight=False)
    out.print(f"  task: {lm.spec.task or '?'}" + ("; streaming step model" if sig.is_streaming
                                                  else ""), highlight=False)
    out.print(f"  parameters: {lm.parameters_count():,}")
    for name, m in lm.module.named_modules():
        kind = getattr(m, "original_name", type(m).__name__)
        if kind in ("LSTM", "GRU", "RNN"):
            d = " bidirectional" if getattr(m, "bidirectional", False) else ""
            out.print(f"  {name or 'model'}: {kind} hidden {getattr(m, 'hidden_size', '?')} x"
                      f"{getattr(m, 'num_layers', '?')}{d}", highlight=False)
    if data_path:
        data = load_eval(data_path)
        x = fit_data(lm, data)
        task = lm.spec.task or data.task
        check_targets(data, lm.spec, task, model_classes(lm, x, task, per_step(lm, data.y, task)))
        out.print(f"  data: {data_path} fits: x {list(x.shape)} {x.dtype}, y {list(data.y.shape)} "
                  f"({data.task})", highlight=False)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", default="x86", show_default=True, help="Target name or .yaml path.")
@click.option("--format", "fmt", default=None,
              help="Format family (onnx, tflite), backend (tflite-litert) or all; comma-separated "
                   "(default: the target's).")
@click.option("--quantize", default=None,
              help="none, dynamic, fp16, int8 or all; comma-separated (default: the target's).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: MODEL's name + -export).")
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="Evaluation data (.npz with x): parity is also checked on its first "
                   "samples, and it calibrates int8 when --calib is not given.")
@click.option("--streaming", is_flag=True,
              help="Also write step models of an edgernn checkpoint (one step or --chunk steps "
                   "per call, every layer's state in and out) into OUT/step.")
@click.option("--chunk", default=1, show_default=True, type=click.IntRange(1),
              help="Time steps per call of the --streaming step model.")
@max_drop_option
@variant_options
@calib_option
@strict_option
@load_options
def export(model: Path, target: str, fmt: str | None, quantize: str | None,
           out_dir: Path | None, data_path: Path | None, streaming: bool, chunk: int,
           max_drop: float | None, per_op: bool, tune: bool, calib: Path | None, strict: bool,
           **kw: Any) -> None:
    """Export MODEL to the target's formats and quantizations; write manifest.json."""
    from edgernn.api import export as api_export
    from edgernn.convert.quantize import MODES
    from edgernn.results.table import manifest_table

    load = _load_kwargs(kw)
    formats = _formats(fmt)
    modes = _split(quantize, list(MODES), "quantization") if quantize else None
    out_dir = out_dir or (model.with_name(model.stem + "-export") if model.name else Path("export"))
    with err.status("exporting") as st:
        manifest = api_export(model, target, out_dir, formats, modes, load,
                              on_step=lambda m: st.update(m), calib=calib, data=data_path,
                              streaming=streaming, chunk=chunk, max_drop=max_drop,
                              opt_in=_opt_in(per_op, tune))
    out.print(manifest_table(manifest))
    out.print(f"manifest: {out_dir / 'manifest.json'}")
    statuses = [a["status"] for a in manifest["artifacts"]]
    if manifest.get("step"):
        out.print(manifest_table(manifest["step"]))
        out.print(f"step model: {manifest['step']['model']['path']}; manifest: "
                  f"{out_dir / 'step' / 'manifest.json'}")
        statuses += [a["status"] for a in manifest["step"]["artifacts"]]
    check_outcome(statuses, strict, "export")


@cli.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--target", default="x86", show_default=True, help="Target name or .yaml path.")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Evaluation data (.npz with x and y).")
@click.option("--format", "fmt", default=None, help="Formats to bench (default: the target's).")
@click.option("--quantize", default=None, help="Quantizations (default: the target's).")
@click.option("--threads", type=click.IntRange(1), help="Inference threads (default: target's).")
@click.option("--runs", "min_runs", default=100, show_default=True, type=click.IntRange(1),
              help="Minimum timed runs per variant (after warm-up).")
@click.option("--min-seconds", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Keep timing each variant at least this long.")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0))
@click.option("--eval-batch", default=1, show_default=True, type=click.IntRange(1),
              help="Evaluation batch size where a variant accepts batches (1 = as deployed).")
@click.option("--collapse", default=0.10, show_default=True, type=click.FloatRange(0),
              help="Relative metric degradation that marks a variant 'accuracy collapsed'.")
@click.option("--out", "out_dir", default="edgernn-bench", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Working directory.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rows as JSON (default: OUT/results.json).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rows as CSV (default: OUT/results.csv).")
@click.option("--force", is_flag=True, help="Measure again even what the store already has.")
@trials_option
@click.option("--step-ms", type=click.FloatRange(0, min_open=True), default=None,
              help="Stream time one call of a step model covers (e.g. 36 for 576 samples at "
                   "16 kHz): rows get rtf = p50 / MS and rtf_p99.")
@click.option("--wide", is_flag=True, help="Show every column (default fits 120 columns).")
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
          step_ms: float | None, wide: bool, max_drop: float | None, per_op: bool, tune: bool,
          db: str | None, strict: bool, **kw: Any) -> None:
    """Export, run and evaluate every variant of MODELS on a target; print one table."""
    from edgernn.api import bench as api_bench
    from edgernn.convert.quantize import MODES
    from edgernn.measure.bench import BenchSettings
    from edgernn.results.files import ResultWriter
    from edgernn.results.selection import op_decisions
    from edgernn.results.store import open_store
    from edgernn.results.table import bench_table

    store = open_store(db)
    settings = BenchSettings(
        store=store, force=force, threads=threads, warmup=warmup, min_runs=min_runs,
        min_seconds=min_seconds, eval_batch=eval_batch, trials=trials,
        collapse=collapse, load_options=_load_kwargs(kw), step_ms=step_ms, max_drop=max_drop,
        opt_in=_opt_in(per_op, tune),
        formats=_formats(fmt), calib_path=calib,
        modes=_split(quantize, list(MODES), "quantization") if quantize else None,
    )
    writer = ResultWriter(json_path or out_dir / "results.json", csv_path or out_dir / "results.csv")
    try:
        with err.status("bench") as st:
            api_bench(list(models), target, data_path, out_dir, settings, writer.add,
                      on_step=lambda m: st.update(m))
    finally:
        if writer.rows:
            out.print(bench_table(writer.rows, title=_bench_title(writer.rows), wide=wide),
                      width=_table_width(wide))
            for line in op_decisions(writer.rows, max_drop=settings.max_drop):
                out.print(line, highlight=False)
            reused = sum(1 for r in writer.rows if r.get("reused"))
            out.print(f"rows: {writer.json_path} {writer.csv_path}; store: {store.path}"
                      + (f" ({reused} row(s) reused from the store, measured earlier with the same "
                         "settings; --force re-measures)"
                         if reused else ""))
    check_outcome([r["status"] for r in writer.rows if not _is_baseline(r)], strict, "bench")


def _table_width(wide: bool) -> int | None:
    """The default table is laid out for 120 columns (status cells wrap), also when piped;
    --wide uses the whole console."""
    return None if wide else min(out.width, 120)


def _is_baseline(row: dict[str, Any]) -> bool:
    from edgernn.measure.bench import BASELINE

    return row["variant"].endswith("/" + BASELINE)


def check_outcome(statuses: list[str], strict: bool, what: str) -> None:
    """Exit 1 (one line) when no variant is ok, or with --strict when any requested variant
    failed; skipped variants (not applicable to this model) never count as failures."""
    statuses = [s for s in statuses if s != "not applicable"]  # variants the graph has no op for
    ok = sum(1 for s in statuses if s == "ok")
    bad = [s for s in statuses if s not in ("ok", "skipped")]
    if not ok:
        raise EdgeRNNError(f"{what}: no variant is ok ({len(bad)} failed, "
                           f"{len(statuses) - len(bad)} skipped); see the table above")
    if bad:
        msg = f"{what}: {len(bad)} of {len(statuses)} variants not ok (see the status column)"
        if strict:
            raise EdgeRNNError(msg + "; --strict makes that an error")
        err.print(msg)


def _bench_title(rows: list[dict[str, Any]]) -> str:
    dev = next((r["device"] for r in rows if r.get("device") and r["target"] != "host"), None)
    dev = dev or next((r["device"] for r in rows if r.get("device")), {}) or {}
    threads = next((r["threads"] for r in rows if r.get("threads")), "?")
    emulated = any(r.get("emulated") for r in rows)
    target = next((r["target"] for r in rows if r["target"] != "host"), "host")
    return (f"target {target}{' (EMULATED: timings are not device latency)' if emulated else ''}: "
            f"{dev.get('cpu_model', '?')} ({dev.get('machine', '?')}), {threads} thread(s); "
            "latency batch 1 after warm-up")


@cli.command()
@db_option
@click.option("--target", help="Only rows of this target.")
@click.option("--model", "models", multiple=True, help="Only rows of this model (name or sha256).")
@click.option("--all", "all_rows", is_flag=True, help="Every stored row, not just the newest per key.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wide", is_flag=True, help="Show every column (default fits 120 columns).")
def results(db: str | None, target: str | None, models: tuple[str, ...], all_rows: bool,
            json_path: Path | None, csv_path: Path | None, wide: bool) -> None:
    """Show stored bench rows; export them as JSON or CSV."""
    from edgernn.results.store import export_rows, open_store
    from edgernn.results.table import bench_table

    store = open_store(db)
    rows = store.rows(target, models, latest=not all_rows)
    if not rows:
        raise EdgeRNNError(f"no stored rows match in {store.path}; run edgernn bench first")
    out.print(bench_table(rows, title=f"{len(rows)} row(s) from {store.path}", wide=wide),
              width=_table_width(wide))
    for p in (json_path, csv_path):
        if p:
            export_rows(rows, p)
            out.print(f"wrote {p}")


@cli.command("select")
@db_option
@click.option("--target", help="Only variants measured on this target.")
@click.option("--model", "models", multiple=True, help="Only these models (name or sha256).")
@click.option("--max-latency-ms", type=click.FloatRange(0, min_open=True))
@click.option("--max-size-mb", type=click.FloatRange(0, min_open=True))
@click.option("--max-drop", type=float,
              help="Largest accepted metric degradation vs fp32 PyTorch (metric units).")
@click.option("--max-rtf", type=click.FloatRange(0, min_open=True),
              help="Largest real-time factor of a step model (step latency / stream time it "
                   "covers, from bench --step-ms; p99's with --latency-stat p99).")
@click.option("--metric", help="Metric to judge accuracy by (default: the task's).")
@click.option("--latency-stat", type=click.Choice(["p50", "p90", "p99", "mean"]), default="p50",
              show_default=True)
@click.option("--prefer", type=click.Choice(["latency", "size", "accuracy"]), default="latency",
              show_default=True, help="What to optimise among variants within budget.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def select_cmd(db: str | None, target: str | None, models: tuple[str, ...],
               max_latency_ms: float | None, max_size_mb: float | None, max_drop: float | None,
               max_rtf: float | None, metric: str | None, latency_stat: str, prefer: str,
               json_path: Path | None) -> None:
    """Pick the variant to ship under latency / size / accuracy budgets, and say why."""
    import json

    from edgernn.results.selection import Budget, select
    from edgernn.results.store import open_store
    from edgernn.results.table import selection_table

    store = open_store(db)
    rows = store.rows(None, models)
    targets = sorted({r["target"] for r in rows if r["target"] != "host"})
    if target and target not in targets:
        raise EdgeRNNError(f"no stored rows for target {target} in {store.path} (targets there: "
                           f"{', '.join(targets) or 'none'}); run edgernn bench first")
    if not targets:
        raise EdgeRNNError(f"no stored rows in {store.path}; run edgernn bench first")
    if not target and len(targets) > 1:
        raise EdgeRNNError(f"rows from several targets ({', '.join(targets)}); pass --target")
    target = target or targets[0]
    budget = Budget(max_latency_ms, max_size_mb, max_drop, latency_stat, max_rtf)
    sel = select(rows, budget, metric, prefer, target=target)
    out.print(selection_table(sel))
    for line in sel.explanation:
        out.print(line, highlight=False)
    if json_path:
        json_path.write_text(json.dumps(sel.to_dict(), indent=2, default=str))
    if sel.pick is None:
        raise EdgeRNNError(sel.explanation[0] + (" " + sel.explanation[1]
                                                 if len(sel.explanation) > 1 else ""))


@cli.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--hidden", default=64, show_default=True, type=click.IntRange(1),
              help="Hidden size of every contender (one size class).")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1))
@click.option("--max-train", type=click.IntRange(1), help="Use only the first N training windows.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1),
              help="Train each contender N times (seeds --seed, --seed+1, ...): a claim's "
                   "verdict needs the difference to exceed the spread across seeds.")
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
@click.option("--step-ms", type=click.FloatRange(0, min_open=True),
              help="With --streaming: stream time one step covers; rows get rtf.")
@click.option("--format", "fmt", default=None, help="Formats to bench (default: the target's).")
@click.option("--quantize", default=None, help="Quantizations (default: the target's).")
@click.option("--max-latency-ms", type=click.FloatRange(0, min_open=True))
@click.option("--max-size-mb", type=click.FloatRange(0, min_open=True))
@click.option("--max-drop", type=float)
@click.option("--runs", "min_runs", default=100, show_default=True, type=click.IntRange(1))
@click.option("--min-seconds", default=1.0, show_default=True, type=click.FloatRange(0))
@trials_option
@click.option("--out", "out_dir", default="edgernn-compare", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@db_option
def compare(data: tuple[str, ...], hidden: int, epochs: int, max_train: int | None, seed: int,
            seeds: int, train_threads: int, targets_: tuple[str, ...], no_bench: bool, names: str,
            streaming: bool,
            step_ms: float | None, fmt: str | None, quantize: str | None,
            max_latency_ms: float | None, max_size_mb: float | None, max_drop: float | None,
            min_runs: int, min_seconds: float, trials: int, out_dir: Path,
            json_path: Path | None, db: str | None) -> None:
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

    budget = Budget(max_latency_ms, max_size_mb, max_drop)
    settings = BenchSettings(
        store=open_store(db), min_runs=min_runs, min_seconds=min_seconds, trials=trials,
        formats=_formats(fmt), step_ms=step_ms,
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
                              seeds=seeds, names=_split(names, list(CONTENDERS), "contender"))
    from edgernn.study.decision import decision_markdown

    for ds, comp in results.items():
        out.print(compare_table(ds, comp.first, target_level(comp.first)),
                  width=_table_width(False))
        out.print(claims_table(comp, comp.claims), width=_table_width(False))
    payload = compare_payload(results, {
        "hidden": hidden, "epochs": epochs, "max_train": max_train,
        "targets": [] if no_bench else list(targets_),
        "budget": {"max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb,
                   "max_drop": max_drop}})
    dest = json_path or out_dir / "compare.json"
    dest.write_text(json.dumps(payload, indent=2, default=str))
    record = dest.with_name("decision.md")
    record.write_text(decision_markdown(json.loads(dest.read_text())))
    out.print(f"wrote {dest} and {record}")


@cli.command()
@click.argument("compare_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write (default: decision.md beside COMPARE_JSON).")
def decision(compare_json: Path, out_path: Path | None) -> None:
    """Rebuild the decision record (decision.md) from a compare.json."""
    import json

    from edgernn.study.decision import decision_markdown

    try:
        payload = json.loads(compare_json.read_text())
        text = decision_markdown(payload)
    except (ValueError, KeyError, TypeError) as e:
        raise EdgeRNNError(f"{compare_json} is not a compare.json written by edgernn compare "
                           f"({type(e).__name__}: {e})") from None
    dest = out_path or compare_json.with_name("decision.md")
    dest.write_text(text)
    out.print(f"wrote {dest}")


@cli.command()
@db_option
@click.option("--target", "targets_", multiple=True, help="Only these targets (default: all).")
@click.option("--model", "models", multiple=True, help="Only these models (name or sha256).")
@click.option("--max-latency-ms", type=click.FloatRange(0, min_open=True))
@click.option("--max-size-mb", type=click.FloatRange(0, min_open=True))
@click.option("--max-drop", type=float)
@click.option("--max-rtf", type=click.FloatRange(0, min_open=True),
              help="Largest real-time factor of a step model.")
@click.option("--metric")
@click.option("--latency-stat", type=click.Choice(["p50", "p90", "p99", "mean"]), default="p50")
@click.option("--prefer", type=click.Choice(["latency", "size", "accuracy"]), default="latency")
@click.option("--out", "out_dir", default="edgernn-report", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--decision", "decision_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Show a decision record first: compare's decision.md or compare.json.")
def report(db: str | None, targets_: tuple[str, ...], models: tuple[str, ...],
           max_latency_ms: float | None, max_size_mb: float | None, max_drop: float | None,
           max_rtf: float | None, metric: str | None, latency_stat: str, prefer: str,
           out_dir: Path, decision_path: Path | None) -> None:
    """Write an HTML page and a Markdown file: tables, Pareto plots, latency distributions
    and the selection with its reasons."""
    from edgernn.results.report import write_report
    from edgernn.results.selection import Budget
    from edgernn.results.store import open_store

    store = open_store(db)
    rows = store.rows(None, models)
    if targets_:
        rows = [r for r in rows if r["target"] in (*targets_, "host")]
    if not rows:
        raise EdgeRNNError(f"no stored rows in {store.path}; run edgernn bench first")
    record = None
    if decision_path is not None:
        import json

        from edgernn.study.decision import decision_markdown

        if not decision_path.is_file():
            raise EdgeRNNError(f"no such decision record: {decision_path}")
        try:
            record = (decision_markdown(json.loads(decision_path.read_text()))
                      if decision_path.suffix == ".json" else decision_path.read_text())
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise EdgeRNNError(f"{decision_path} is not a decision.md or compare.json "
                               f"({type(e).__name__})") from None
    page, md = write_report(rows, out_dir, Budget(max_latency_ms, max_size_mb, max_drop,
                                                  latency_stat, max_rtf), prefer, metric,
                            decision=record)
    out.print(f"wrote {page} and {md}")


@cli.group(invoke_without_command=True)
@click.pass_context
def targets(ctx: click.Context) -> None:
    """List target definitions (targets/*.yaml)."""
    if ctx.invoked_subcommand:
        return
    from edgernn.runners.target import load_target, target_listing

    for name, path in target_listing():
        try:
            t = load_target(str(path))
            out.print(f"[bold]{name}[/] ({t.runner}; formats {', '.join(t.formats)}): "
                      f"{t.description}  [dim]{path}[/]")
        except EdgeRNNError as e:
            out.print(f"[bold]{name}[/] [red]invalid[/]: {e}")


@targets.command("show")
@click.argument("name")
def targets_show(name: str) -> None:
    """Validate and print target NAME (a name or a .yaml path) without connecting."""
    from dataclasses import asdict

    from edgernn.runners.inventory import devices
    from edgernn.runners.target import load_target

    t = load_target(name)
    for k, v in asdict(t).items():
        if k not in ("group", "count", "device_id"):
            out.print(f"{k:>12}: {v}", highlight=False)
    devs = devices(t)
    out.print(f"{'devices':>12}: {len(devs)}", highlight=False)
    for d in devs:  # each board of a group, with what differs from the group's keys
        diff = {k: v for k, v in d.target.extra.items() if t.extra.get(k) != v}
        if d.target.cpus != t.cpus:
            diff["cpus"] = d.target.cpus
        out.print(f"{'':>12}  {d.id}" + (f"  {diff}" if diff else ""), highlight=False)


@targets.command("check")
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True,
              help="Check every device of every target on the search path, in parallel.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write each device's row (status, arch, runtimes, start/end times) here.")
def targets_check(name: str | None, all_: bool, json_path: Path | None) -> None:
    """Connect to target NAME (every device of a group), or with --all to every device;
    report what each device has and what is missing."""
    import json
    import time

    from edgernn.runners import get_runner
    from edgernn.runners import inventory as inv
    from edgernn.runners.target import load_target

    if bool(name) == all_:
        raise EdgeRNNError("targets check takes a target NAME or --all (not both)")
    t = load_target(name) if name else None
    if t is not None and not json_path and len(inv.devices(t)) == 1:
        t = inv.devices(t)[0].target  # one device: its facts in full
        runner = get_runner(t)
        try:
            facts = runner.facts()
        finally:
            runner.close()
        pip = " ".join(getattr(runner, "python", ["python3"])) + " -m pip install"
        versions = facts.pop("runtimes", {}) or {}
        thermal = facts.pop("thermal", {}) or {}
        for k, v in facts.items():
            out.print(f"{k:>12}: {v}", highlight=False)
        for k, v in versions.items():
            out.print(f"{k:>12}: {v or '[red]missing[/]'}", highlight=False)
        for k, v in thermal.items():
            out.print(f"{k:>12}: {v}", highlight=False)
        missing = inv.missing_runtimes(t, versions)
        if missing:
            pkgs = " ".join(sorted({m[2] for m in missing}))
            raise EdgeRNNError(
                f"{t.name} lacks {', '.join(f'{m[1]} (for {m[0]})' for m in missing)}; on the "
                f"device run: {pip} {pkgs}")
        out.print(f"[green]{t.name} has every runtime its target file names[/]")
        return
    entries = inv.inventory() if all_ else inv.inventory([name])
    t0 = time.time()
    rows = inv.check_all(entries)
    wall = time.time() - t0
    out.print(inv.check_table(rows), width=min(out.width, 120))
    for r in rows:
        if r.install:
            out.print(f"{r.device}: on the device run: {r.install}", highlight=False)
    if json_path:
        json_path.write_text(json.dumps({"wall_seconds": round(wall, 3),
                                         "devices": [r.as_dict() for r in rows]}, indent=1))
    line = inv.failure_line(rows)
    if line:
        raise EdgeRNNError(line)
    n = sum(1 for r in rows if r.device)
    out.print(f"[green]{n} device{'s' * (n != 1)} ok[/] in {wall:.1f} s")


@cli.command()
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
    from edgernn.lab.spec import load_sweep
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
        out.print(bench_table(shown, title=f"sweep: {len(shown)} row(s)", wide=wide),
                  width=_table_width(wide))
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


@cli.command()
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
               force=False, trials=3, step_ms=None, wide=False, max_drop=None, per_op=False,
               tune=False, db=None, strict=False,
               trust_pickle=False, imports=(), input_shape=None, input_dtype=None, task=None,
               inputs=(), states=())


def main() -> None:
    """Entry point: user errors become one line and exit 1; Ctrl-C exits 130."""
    try:
        cli.main(standalone_mode=False)
    except EdgeRNNError as e:
        err.print(f"[red]edgernn: error:[/] {rich_escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except click.exceptions.Abort:
        err.print("edgernn: interrupted; finished rows were kept")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("edgernn: interrupted; finished rows were kept")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # a bug, not the user's fault: still one line unless debugging
        if os.environ.get("EDGERNN_DEBUG"):
            raise
        err.print(f"edgernn: internal error: {type(e).__name__}: "
                  f"{rich_escape(str(e).splitlines()[0][:300])} "
                  "(set EDGERNN_DEBUG=1 for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
