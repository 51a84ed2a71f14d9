"""Commands over the results store: results, select, report."""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.cli.app import FiniteFloat, _table_width, db_option, out
from edgernn.errors import EdgeRNNError


@click.command()
@db_option
@click.option("--target", help="Only rows of this target.")
@click.option("--model", "models", multiple=True, help="Only rows of this model (name or sha256).")
@click.option("--all", "all_rows", is_flag=True, help="Every stored row, not just the newest per key.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wide", is_flag=True, help="Show every column (default fits 120 columns).")
@click.option("--notes", "all_notes", is_flag=True,
              help="Show every footnote in full (default: the first ones, one line each).")
def results(db: str | None, target: str | None, models: tuple[str, ...], all_rows: bool,
            json_path: Path | None, csv_path: Path | None, wide: bool, all_notes: bool) -> None:
    """Show stored bench rows; export them as JSON or CSV."""
    from edgernn.results.store import export_rows, open_store
    from edgernn.results.table import bench_table

    store = open_store(db)
    rows = store.rows(target, models, latest=not all_rows)
    if not rows:
        raise EdgeRNNError(f"no stored rows match in {store.path}; run edgernn bench first")
    width = _table_width(wide)
    out.print(bench_table(rows, title=f"{len(rows)} row(s) from {store.path}", wide=wide,
                          width=width, notes=all_notes), width=width)
    for p in (json_path, csv_path):
        if p:
            export_rows(rows, p)
            out.print(f"wrote {p}")


@click.command("select")
@db_option
@click.option("--target", help="Only variants measured on this target.")
@click.option("--model", "models", multiple=True, help="Only these models (name or sha256).")
@click.option("--max-latency-ms", type=FiniteFloat(0, min_open=True))
@click.option("--max-size-mb", type=FiniteFloat(0, min_open=True))
@click.option("--max-drop", type=FiniteFloat(),
              help="Largest accepted metric degradation vs fp32 PyTorch (metric units).")
@click.option("--max-rtf", type=FiniteFloat(0, min_open=True),
              help="Largest real-time factor of a step model (step latency / stream time it "
                   "covers, from bench --step-ms; p99's with --latency-stat p99).")
@click.option("--metric", help="Metric to judge accuracy by (default: the task's).")
@click.option("--latency-stat", type=click.Choice(["p50", "p90", "p99", "mean"]), default="p50",
              show_default=True)
@click.option("--prefer", type=click.Choice(["latency", "size", "accuracy"]), default="latency",
              show_default=True, help="What to optimise among variants within budget.")
@click.option("--format", "fmt", metavar="FORMATS",
              help="Only these formats, comma-separated: a family (onnx, tflite) or a plug-in "
                   "(tflite-litert); torch ranks the PyTorch runs (default: every file to ship).")
@click.option("--runtime", "runtime", metavar="RUNTIMES",
              help="Only rows run by these runtimes, comma-separated (e.g. onnxruntime, litert).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def select_cmd(db: str | None, target: str | None, models: tuple[str, ...],
               max_latency_ms: float | None, max_size_mb: float | None, max_drop: float | None,
               max_rtf: float | None, metric: str | None, latency_stat: str, prefer: str,
               fmt: str | None, runtime: str | None, json_path: Path | None) -> None:
    """Pick the variant to ship under latency / size / accuracy budgets, and say why. A step
    model and a whole-sequence model, or rows judged on different evaluation files, are ranked
    in separate groups."""
    import json

    from edgernn.names import shown_row
    from edgernn.results.selection import Budget, select_groups
    from edgernn.results.store import open_store
    from edgernn.results.table import selection_table

    store = open_store(db)
    rows = [shown_row(r) for r in store.rows(None, models)]  # names are data
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
    formats, runtimes = _names(fmt), _names(runtime)
    sels = select_groups(rows, budget, metric, prefer, target=target, formats=formats,
                         runtimes=runtimes)
    if formats or runtimes:
        sels = [s for s in sels if s.candidates] or sels
        if not any(s.candidates for s in sels):
            scope = " and ".join(f"{w} {v}" for w, v in (("format", fmt), ("runtime", runtime)) if v)
            raise EdgeRNNError(f"no usable {scope} variant on {target} (ok and measured) in "
                               f"{store.path}")
    several = len(sels) > 1
    if several:
        out.print(f"{len(sels)} groups, ranked apart (a step model's per-step time is never "
                  "ranked against whole-sequence calls, nor accuracies from different "
                  "evaluation files):", highlight=False)
    for sel in sels:
        if several:
            out.print(f"\n[bold]{sel.group}[/]", highlight=False)
        out.print(selection_table(sel))
        # a single failed selection says its first lines once, as the error below
        lines = sel.explanation[2:] if sel.pick is None and not several else sel.explanation
        for line in lines:
            out.print(line, highlight=False)
    if json_path:
        first = sels[0].to_dict()
        payload = {**first, "groups": [s.to_dict() for s in sels]} if several else first
        json_path.write_text(json.dumps(payload, indent=2, default=str))
    if not any(s.pick for s in sels):
        if several:
            raise EdgeRNNError(f"nothing meets the budget in any of the {len(sels)} groups "
                               "(closest variants above)")
        expl = sels[0].explanation
        raise EdgeRNNError(expl[0] + (" " + expl[1] if len(expl) > 1 else ""))


def _names(value: str | None) -> tuple[str, ...] | None:
    """A comma-separated option as a tuple of names (None when not given)."""
    items = tuple(v.strip() for v in (value or "").split(",") if v.strip())
    return items or None


@click.command()
@db_option
@click.option("--target", "targets_", multiple=True, help="Only these targets (default: all).")
@click.option("--model", "models", multiple=True, help="Only these models (name or sha256).")
@click.option("--max-latency-ms", type=FiniteFloat(0, min_open=True))
@click.option("--max-size-mb", type=FiniteFloat(0, min_open=True))
@click.option("--max-drop", type=FiniteFloat())
@click.option("--max-rtf", type=FiniteFloat(0, min_open=True),
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
