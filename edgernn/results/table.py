"""Terminal tables for bench rows and manifests (rich)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from edgernn.measure.trials import UNSTABLE_SPREAD
from edgernn.names import shown, shown_row
from edgernn.results.footnotes import DEFAULT_LIMIT, Footnotes


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _size(n: int | None) -> str:
    """Decimal units everywhere (kB = 1000 bytes, MB = 10^6), as select and report use."""
    if not n:
        return "-"
    return f"{n / 1e3:.1f} kB" if n < 1_000_000 else f"{n / 1e6:.2f} MB"


STATUS_STYLE = {"ok": "green", "accuracy collapsed": "bold red", "skipped": "yellow"}
NARROW = ["model", "variant", "status", "size", "p50 ms", "p99", "vs torch", "metric", "drop",
          "agree"]
WIDE = ["model", "variant", "target", "runtime", "status", "size", "p50 ms", "p90", "p99", "std",
        "spread", "vs torch", "load ms", "first ms", "mem MB", "metric", "drop", "agree", "parity"]


CLASSIFY_METRICS = frozenset({"accuracy", "macro_f1", "roc_auc"})


def classifies(row: dict[str, Any]) -> bool:
    """Whether a row's agreement is the share of equal class predictions (else the share of
    output values within ``agreement_tol`` of fp32's); older rows say it by their metric."""
    return row["task"] == "classify" if row.get("task") else row.get("metric") in CLASSIFY_METRICS


def agreement_text(row: dict[str, Any]) -> str:
    """The agreement with its meaning: "0.98" (same class), or "0.98 within 0.0031"."""
    a = row.get("agreement")
    if a is None:
        return "-"
    tol = row.get("agreement_tol")
    return f"{a:.3f}" if classifies(row) or tol is None else f"{a:.3f} within {tol:.2g}"


def _agree_columns(cols: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """``agree`` for classifiers, ``near fp32`` for regression outputs, both when mixed."""
    kinds = [c for c, on in (("agree", any(classifies(r) for r in rows)),
                             ("near fp32", any(not classifies(r) for r in rows))) if on]
    at = cols.index("agree")
    return [*cols[:at], *kinds, *cols[at + 1:]]


def _tolerance_legend(rows: list[dict[str, Any]]) -> str:
    tols = sorted({r["agreement_tol"] for r in rows if r.get("agreement_tol") is not None
                   and not classifies(r)})
    from edgernn.probe.metrics import AGREE_TOL

    return (f"near fp32: share of output values within tol of fp32 PyTorch's, tol = "
            f"{AGREE_TOL:.0%} of the standard deviation of y"
            + (f" (= {', '.join(f'{t:.2g}' for t in tols)})" if tols else ""))


# default columns left out first when a table is wider than the terminal (then said so)
DROP_ORDER = ("p99", "vs torch", "rtf", "near fp32", "agree", "metric")


def _fits(t: Table, width: int) -> bool:
    """Whether ``t`` fits ``width`` columns without squeezing any cell."""
    from rich.console import Console

    con = Console(width=10_000, file=io.StringIO())
    return con.measure(t).maximum <= width


def bench_table(rows: list[dict[str, Any]], title: str = "", wide: bool = False,
                width: int | None = None, notes: bool = False) -> Group:
    """One row per variant; reasons and notes go under it as a legend, one line per distinct
    note (``footnotes``). The default columns fit ``width`` (120 when piped): columns drop in
    ``DROP_ORDER`` and the caption says which; ``wide`` shows every column, ``notes`` every
    note and the full legend."""
    rows, title = [shown_row(r) for r in rows], shown(title)
    cols = _agree_columns(WIDE if wide else NARROW, rows)
    if any(r.get("rtf") is not None for r in rows):  # step models benched with --step-ms
        at = cols.index("p99") + 1
        cols = [*cols[:at], "rtf", *(["rtf p99"] if wide else []), *cols[at:]]
    models = list(dict.fromkeys(r["model"] for r in rows))
    if len(models) == 1 and not wide:  # one model: its name goes in the title, not every row
        cols = [c for c in cols if c != "model"]
        title = f"model {models[0]}" + (f"; {title}" if title else "")
    dropped: list[str] = []
    t = _bench_table(rows, cols, title, wide, notes, dropped)
    while width is not None and not wide and not _fits(t, width):
        gone = next((c for c in DROP_ORDER if c in cols), None)
        if gone is None:
            break
        cols = [c for c in cols if c != gone]
        dropped.append(gone)
        t = _bench_table(rows, cols, title, wide, notes, dropped)
    return _with_legend(t, not (wide or notes))


def _with_legend(t: Table, cut: bool) -> Group:
    """The table and its caption lines under it; by default each footnote stays one line,
    cut at the terminal's width with an ellipsis (the last line, the legend, wraps)."""
    lines = (t.caption or "").split("\n")
    t.caption = None
    texts = []
    for x in lines[:-1]:
        text = Text.from_markup(x, overflow="ellipsis" if cut else "fold")
        text.no_wrap = cut
        texts.append(text)
    return Group(t, *texts, Text.from_markup(lines[-1]))


def _row_notes(r: dict[str, Any]) -> list[str]:
    texts = ([str(r["reason"])] if r.get("reason") else []) + [str(n) for n in r.get("notes") or []]
    if r.get("reused"):
        when = str(r.get("timestamp", "?"))[:16].replace("T", " ")
        texts.append(f"reused from the store: measured {when} UTC with the same settings "
                     "(--force re-measures)")
    return texts


def _bench_table(rows: list[dict[str, Any]], cols: list[str], title: str, wide: bool,
                 notes: bool, dropped: list[str]) -> Table:
    metrics = {r["metric"] for r in rows}
    one_metric = metrics.pop() if len(metrics) == 1 else None
    t = Table(title=title, header_style="bold", title_justify="left", caption_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0))
    left = {"model", "variant", "target", "runtime", "status", "metric"}
    for col in cols:
        header = one_metric if col == "metric" and one_metric else col
        # only the status cell may wrap: names and numbers are never cut to fit 120 columns
        t.add_column(header, justify="left" if col in left and col != "metric" or
                     (col == "metric" and not one_metric) else "right",
                     no_wrap=col != "status", min_width=16 if col == "status" else None)
    base = {r["model"]: r for r in rows if r["variant"].endswith("/torch-fp32") and r["latency_ms"]}
    per_row = [_row_notes(r) for r in rows]
    foot = Footnotes(per_row, {str(r["reason"]) for r in rows if r.get("reason")})
    for i, r in enumerate(rows):
        lat = r.get("latency_ms") or {}
        b = base.get(r["model"])
        same_place = b is not None and b["target"] == r["target"]
        ratio = f"{lat['p50'] / b['latency_ms']['p50']:.2f}x" if lat and same_place else "-"
        label = r["status"]  # status words are never shortened
        if r.get("unstable"):
            label += ", unstable"
        if r.get("reused"):
            label += ", reused"
        status = label + foot.mark(i, None if wide or notes else DEFAULT_LIMIT)
        style = STATUS_STYLE.get(r["status"], "red")
        value = f"{r['value']:.4f}" if r.get("value") is not None else "-"
        rt = r["runtime"] + (f" {r['runtime_version']}" if r.get("runtime_version") else "")
        cells = {
            "model": r["model"], "variant": r["variant"].split("/", 1)[-1],
            "target": r["target"] + (" [yellow](emulated)[/]" if r.get("emulated") else ""),
            "runtime": rt, "status": f"[{style}]{status}[/]", "size": _size(r.get("size_bytes")),
            "p50 ms": _ms(lat.get("p50")), "p90": _ms(lat.get("p90")), "p99": _ms(lat.get("p99")),
            "std": _ms(lat.get("std")),
            "rtf": f"{r['rtf']:.3g}" if r.get("rtf") is not None else "-",
            "rtf p99": f"{r['rtf_p99']:.3g}" if r.get("rtf_p99") is not None else "-",
            "spread": f"{lat['spread']:.0%}" if lat.get("trials", 1) > 1 else "-",
            "vs torch": ratio, "load ms": _ms(lat.get("load")), "first ms": _ms(lat.get("first")),
            "mem MB": f"{r['peak_mb']:.1f}" if r.get("peak_mb") is not None else "-",
            "metric": value if one_metric else f"{r['metric']} {value}",
            "drop": f"{r['accuracy_drop']:+.4f}" if r.get("accuracy_drop") is not None else "-",
            "agree": f"{r['agreement']:.3f}" if r.get("agreement") is not None
            and classifies(r) else "-",
            "near fp32": f"{r['agreement']:.3f}" if r.get("agreement") is not None
            and not classifies(r) else "-",
            "parity": f"{r['parity_max_abs_diff']:.1e}" if r.get("parity_max_abs_diff") else "-",
        }
        t.add_row(*(cells[c] for c in cols))
    full = wide or notes
    legend = _legend(rows, cols, full)
    lines = [escape(x) for x in foot.legend(None if full else DEFAULT_LIMIT, width=None)]
    if dropped:
        lines.append(f"columns left out to fit the terminal: {', '.join(dropped)} (--wide shows "
                     "every column)")
    t.caption = "\n".join([*lines, legend])
    return t


def _legend(rows: list[dict[str, Any]], cols: list[str], full: bool) -> str:
    """What the columns mean: in one short line by default, in full with --wide / --notes."""
    trials = max(((r.get("latency_ms") or {}).get("trials", 1) for r in rows), default=1)
    emulated = any(r.get("emulated") for r in rows)
    if not full:
        return ("legend: kB = 1000 B; p50/p99 batch-1 ms"
                + (f", median of {trials} trials" if trials > 1 else "")
                + "; drop = fp32 PyTorch metric - variant's (positive = worse)"
                + ("; agree = share of fp32's predictions" if "agree" in cols else "")
                + ("; near fp32 = share of values within tol of fp32's" if "near fp32" in cols
                   else "")
                + f"; unstable: trials > {UNSTABLE_SPREAD:.0%} apart"
                + ("; EMULATED: not device latency" if emulated else "")
                + "; --notes: full legend")
    legend = ("size: file bytes (kB = 1000 B); p50/p99: batch-1 latency"
              + (f", median of {trials} trials in separate processes, interleaved across variants"
                 if trials > 1 else "")
              + "; vs torch: p50 / PyTorch fp32 p50 on the same machine; drop: fp32 PyTorch metric "
              "minus variant metric (positive = worse; for error metrics, variant minus fp32); "
              + "; ".join(([("agree: share of predictions equal to fp32 PyTorch's")]
                           if "agree" in cols else [])
                          + ([_tolerance_legend(rows)] if "near fp32" in cols else []))
              + "; unstable: trial medians "
              f"differ by more than {UNSTABLE_SPREAD:.0%}; (emulated): measured under emulation, "
              "not device latency"
              + ("; spread: (max - min) / median of the trial p50s; mem: peak RSS growth from "
                 "loading and running the model; parity: max |output - fp32 PyTorch output| on "
                 "the evaluation data" if "parity" in cols else "; --wide shows target, runtime, "
                 "p90, std, spread, load, first call, memory and parity"))
    fns = {(r["metric"], r["metric_fn"], r.get("higher_is_better")) for r in rows
           if r.get("metric_fn")}
    for name, source, higher in sorted(fns, key=str):
        legend += (f"; {name}: the metric function {source} ({'higher' if higher else 'lower'} "
                   "is better), computed on this host over the outputs each probe sent back")
    if "rtf" in cols:
        steps = sorted({r["step_ms"] for r in rows if r.get("step_ms")})
        legend += (f"; rtf: real-time factor, p50 of one step call (state fed back) / the "
                   f"{', '.join(f'{v:g}' for v in steps)} ms of stream it covers (below 1 keeps up)")
    if "target" not in cols and emulated:
        legend += "; EMULATED target: timings are not device latency"
    return escape(legend)


def manifest_table(manifest: dict[str, Any], notes: bool = False) -> Group:
    """One row per exported variant (file name, size, parity); errors and notes go under it
    as a legend, one line per distinct note (``footnotes``), so the table stays narrow."""
    arts = [a for a in manifest["artifacts"]
            if a["status"] != "not applicable"]  # a variant about an op the graph lacks
    folders = {str(Path(a["path"]).parent) for a in arts if a.get("path")}
    where = f"; files in {folders.pop()}" if len(folders) == 1 else ""
    t = Table(title=shown(f"{manifest['model']['name']} -> {manifest['target']}{where}"),
              header_style="bold", title_justify="left", caption_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for col in ("variant", "status", "file", "size", "parity", "any seq len"):
        t.add_column(col, no_wrap=col != "status",
                     justify="right" if col in ("size", "parity") else "left")
    per_row = [([str(a["error"])] if a.get("error") else []) + [str(n) for n in a.get("notes") or []]
               for a in arts]
    foot = Footnotes(per_row, {str(a["error"]) for a in arts if a.get("error")})
    for i, a in enumerate(arts):
        parity = f"{a['parity_max_abs_diff']:.1e}" if a.get("parity_max_abs_diff") is not None else "-"
        name = Path(a["path"]).name if a.get("path") and where else (a.get("path") or "-")
        style = STATUS_STYLE.get(a["status"], "red")
        t.add_row(a["variant"], f"[{style}]{a['status']}"
                  f"{foot.mark(i, None if notes else DEFAULT_LIMIT)}[/]", name,
                  _size(a.get("size_bytes")), parity,
                  "yes" if a.get("accepts_other_seq_len") else "no")
    lines = [escape(x) for x in foot.legend(None if notes else DEFAULT_LIMIT, width=None,
                                            more="--notes shows every note; manifest.json has "
                                                 "them")]
    t.caption = "\n".join([*lines, "any seq len: the file runs other sequence lengths than "
                                    "the one exported"])
    return _with_legend(t, not notes)


def selection_table(sel: Any) -> Table:
    """Candidates with Pareto membership and budget verdicts; the pick is marked."""
    t = Table(title=f"variants judged by {sel.metric}", header_style="bold")
    for col in ("", "variant", "target", "latency ms", "size", "drop", "pareto", "budget"):
        t.add_column(col, justify="right" if col in ("latency ms", "size", "drop") else "left")
    order = sorted(sel.candidates, key=lambda c: (c is not sel.pick, bool(c.failed), c.latency))
    for c in order:
        mark = "[bold green]PICK[/]" if c is sel.pick else ""
        t.add_row(mark, shown(c.name), shown(c.row["target"]), f"{c.latency:.4g}", _size(c.row["size_bytes"]),
                  f"{c.drop:+.4f}", "yes" if c in sel.pareto else "",
                  "[red]" + "; ".join(c.failed) + "[/]" if c.failed else "[green]within[/]")
    return t


def compare_table(dataset: str, group: list[Any], level: float) -> Table:
    """Contenders side by side: size, training cost, accuracy, best deployable variant."""
    metric = group[0].metric
    t = Table(title=f"{dataset}: LSTM vs GRU vs GRU+LSTM, same training budget "
                    f"(target level {metric} {level:.4g} = reached by every contender)",
              header_style="bold", title_justify="left")
    targets = sorted({tg for c in group for tg in c.best})
    for col in ["contender", "layers", "params", "vs lstm", "s/epoch min/median", "epochs to target",
                f"final {metric}"] + [f"best on {tg}" for tg in targets]:
        t.add_column(col, justify="right" if col in ("params", "vs lstm", "s/epoch min/median",
                                                     "epochs to target") else "left")
    lstm = next((c for c in group if c.name == "lstm"), group[0])
    for c in group:
        cells = [c.name, c.layers, f"{c.parameters:,}", f"{c.parameters / lstm.parameters:.2f}x",
                 f"{c.s_per_epoch_min:.2f}/{c.s_per_epoch:.2f}", str(c.epochs_to(level) or "never"),
                 f"{c.final:.4f}"]
        for tg in targets:
            b = c.best.get(tg) or {}
            if b.get("variant"):
                emu = " (emulated)" if b.get("emulated") else ""
                per = " per step" if b.get("per_step") else ""
                rtf = f", rtf {b['rtf']:.3g}" if b.get("rtf") is not None else ""
                cells.append(f"{b['variant'].split('/', 1)[1]}: {b['latency_ms']:.3g} ms{per}{emu}"
                             f"{rtf}, {_size(b['size_bytes'])}, {metric} {b['value']:.4g}")
            else:
                cells.append(b.get("why", "-"))
        t.add_row(*cells)
    return t
