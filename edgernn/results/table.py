"""Terminal tables for bench rows and manifests (rich)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from edgernn.measure.trials import UNSTABLE_SPREAD


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
SHORT_STATUS = {"accuracy collapsed": "collapsed", "export failed": "export fail",
                "run failed": "run fail", "parity failed": "parity fail"}
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


def bench_table(rows: list[dict[str, Any]], title: str = "", wide: bool = False) -> Table:
    """One row per variant; reasons and notes go in the caption as numbered footnotes. The
    default columns fit a 120-column terminal; ``wide`` shows every column."""
    cols = _agree_columns(WIDE if wide else NARROW, rows)
    if any(r.get("rtf") is not None for r in rows):  # step models benched with --step-ms
        at = cols.index("p99") + 1
        cols = [*cols[:at], "rtf", *(["rtf p99"] if wide else []), *cols[at:]]
    metrics = {r["metric"] for r in rows}
    one_metric = metrics.pop() if len(metrics) == 1 else None
    models = list(dict.fromkeys(r["model"] for r in rows))
    if len(models) == 1 and not wide:  # one model: its name goes in the title, not every row
        cols = [c for c in cols if c != "model"]
        title = f"model {models[0]}" + (f"; {title}" if title else "")
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
    foot: dict[str, int] = {}  # identical notes share one footnote number
    for r in rows:
        lat = r.get("latency_ms") or {}
        b = base.get(r["model"])
        same_place = b is not None and b["target"] == r["target"]
        ratio = f"{lat['p50'] / b['latency_ms']['p50']:.2f}x" if lat and same_place else "-"
        marks = []
        texts = ([f"{r['variant']}: {r['reason']}"] if r.get("reason") else []) + list(
            r.get("notes") or [])
        if r.get("reused"):
            when = str(r.get("timestamp", "?"))[:16].replace("T", " ")
            texts.append(f"reused from the store: measured {when} UTC with the same settings "
                         "(--force re-measures)")
        for text in texts:
            marks.append(str(foot.setdefault(text, len(foot) + 1)))
        label = SHORT_STATUS.get(r["status"], r["status"]) if not wide else r["status"]
        if r.get("unstable"):
            label += ", unstable"
        if r.get("reused"):
            label += ", reused"
        status = label + (f" [{', '.join(marks)}]" if marks else "")  # wraps at spaces
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
    trials = max(((r.get("latency_ms") or {}).get("trials", 1) for r in rows), default=1)
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
                 "the evaluation data" if wide else "; --wide shows target, runtime, p90, std, "
                 "spread, load, first call, memory and parity"))
    fns = {(r["metric"], r["metric_fn"], r.get("higher_is_better")) for r in rows
           if r.get("metric_fn")}
    for name, source, higher in sorted(fns, key=str):
        legend += (f"; {name}: the metric function {source} ({'higher' if higher else 'lower'} "
                   "is better), computed on this host over the outputs each probe sent back")
    if "rtf" in cols:
        steps = sorted({r["step_ms"] for r in rows if r.get("step_ms")})
        legend += (f"; rtf: real-time factor, p50 of one step call (state fed back) / the "
                   f"{', '.join(f'{v:g}' for v in steps)} ms of stream it covers (below 1 keeps up)")
    if not wide and any(r.get("emulated") for r in rows):
        legend += "; EMULATED target: timings are not device latency"
    t.caption = "\n".join([f"[{n}] {text}" for text, n in foot.items()] + [legend])
    return t


def manifest_table(manifest: dict[str, Any]) -> Table:
    t = Table(title=f"{manifest['model']['name']} -> {manifest['target']}", header_style="bold")
    for col in ("variant", "status", "file", "size", "parity", "other seq len", "notes"):
        t.add_column(col, overflow="fold")
    for a in manifest["artifacts"]:
        if a["status"] == "not applicable":  # a variant about an op the graph lacks
            continue
        status = a["status"] + (f": {a['error']}" if a.get("error") else "")
        parity = f"{a['parity_max_abs_diff']:.1e}" if a.get("parity_max_abs_diff") is not None else "-"
        t.add_row(a["variant"], status, a.get("path") or "-", _size(a.get("size_bytes")), parity,
                  "yes" if a.get("accepts_other_seq_len") else "no", "; ".join(a.get("notes") or []))
    return t


def selection_table(sel: Any) -> Table:
    """Candidates with Pareto membership and budget verdicts; the pick is marked."""
    t = Table(title=f"variants judged by {sel.metric}", header_style="bold")
    for col in ("", "variant", "target", "latency ms", "size", "drop", "pareto", "budget"):
        t.add_column(col, justify="right" if col in ("latency ms", "size", "drop") else "left")
    order = sorted(sel.candidates, key=lambda c: (c is not sel.pick, bool(c.failed), c.latency))
    for c in order:
        mark = "[bold green]PICK[/]" if c is sel.pick else ""
        t.add_row(mark, c.name, c.row["target"], f"{c.latency:.4g}", _size(c.row["size_bytes"]),
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
