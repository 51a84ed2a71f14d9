"""Report: a self-contained HTML page and a Markdown file with tables, a latency-vs-accuracy
Pareto plot per target (marker size = model size), latency distributions, and the selection
with its reasons."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgernn import __version__
from edgernn.names import file_part, shown_row
from edgernn.results.selection import Budget, Candidate, Selection, select_groups
from edgernn.results.table import agreement_text
from edgernn.results.verdict import verdict, verdict_block


@dataclass
class Figure:
    name: str
    title: str
    png: bytes


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


LABELLED = 6  # points named on the plot: the front (fastest first) and the pick; others numbered


def pareto_plot(target: str, sel: Selection, name: str | None = None,
                budget: Budget | None = None) -> Figure:
    """Latency (log x) vs accuracy drop; marker area ~ file size; colour = Pareto front,
    dominated or over budget (the front is over latency, size AND drop); pick ringed. Only
    the pick and the front are named on the plot; other points carry a number, listed in the
    key beside it. One group of comparable rows (``groups``) per plot."""
    plt = _plt()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    sizes = [c.size_mb for c in sel.candidates] or [1.0]
    big = max(sizes)
    order = sorted(sel.candidates, key=lambda c: (c.latency, c.drop))
    named, numbered = plot_labels(sel)
    for c in order:
        area = 40 + 900 * (c.size_mb / big)
        color = "tab:gray" if c.failed else ("tab:green" if c in sel.pareto else "tab:blue")
        ax.scatter(c.latency, c.drop, s=area, alpha=0.55, color=color, edgecolor="k", lw=0.5)
    for i, c in enumerate(named):
        ax.annotate(f"{c.name.split('/', 1)[-1] if _one_model(sel) else c.name} "
                    f"({c.size_mb * 1000:.0f} kB)", (c.latency, c.drop), fontsize=7,
                    xytext=(8, 10 + 11 * (i % 4)), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"},
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    for i, c in enumerate(numbered, 1):
        ax.annotate(str(i), (c.latency, c.drop), fontsize=6, ha="center", va="center")
    if sel.pick:
        ax.scatter(sel.pick.latency, sel.pick.drop, s=60 + 1100 * (sel.pick.size_mb / big),
                   facecolors="none", edgecolors="red", lw=2)
    handles = [Line2D([], [], marker="o", ls="", color=col, label=label)
               for col, label in legend_entries(sel, budget)]
    handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="red", mew=2,
                          label=f"pick: {sel.pick.name}" if sel.pick else "no pick"))
    ax.legend(handles=handles, fontsize=8, loc="best")
    if numbered:
        key = "\n".join(f"{i}: {c.name}" for i, c in enumerate(numbered, 1))
        fig.text(0.80, 0.95, key, fontsize=6, va="top", ha="left", family="monospace")
        fig.subplots_adjust(right=0.78)
    ax.set_xscale("log")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("latency p50 (ms, log scale, batch 1"
                  + (", one step call" if "step models" in sel.group else "") + ")")
    ax.set_ylabel(f"{sel.metric} drop vs best fp32 (lower is better)")
    ax.margins(x=0.15, y=0.2)
    emulated = any(c.row.get("emulated") for c in sel.candidates)
    ax.set_title(f"{target}{' (EMULATED: not device latency)' if emulated else ''}: "
                 "latency vs accuracy, marker area = file size"
                 + (f"\n{sel.group}" if sel.group else ""), fontsize=9)
    if not numbered:
        fig.tight_layout()
    else:
        fig.subplots_adjust(left=0.08, bottom=0.11, top=0.88)
    return Figure(name or f"pareto-{target}", f"Pareto plot, {target}", _png(fig, plt))


def plot_labels(sel: Selection) -> tuple[list[Candidate], list[Candidate]]:
    """Points named on the Pareto plot (the pick, then the front fastest first, at most
    ``LABELLED``) and the others, numbered in latency order in the key beside it."""
    order = sorted(sel.candidates, key=lambda c: (c.latency, c.drop))
    front = [c for c in order if c in sel.pareto and not c.failed]
    named = (([sel.pick] if sel.pick else []) + [c for c in front if c is not sel.pick])
    named = named[:LABELLED]
    return named, [c for c in order if c not in named]


def legend_entries(sel: Selection, budget: Budget | None) -> list[tuple[str, str]]:
    """(colour, label) of the point kinds present: no "over budget" without a budget (then a
    grey point is one the accuracy rule left out)."""
    budgeted = budget is not None and any(
        v is not None for v in (budget.max_latency_ms, budget.max_size_mb, budget.max_drop,
                                budget.max_rtf))
    kinds = [("tab:green", "Pareto front (latency, size, drop)", bool(sel.pareto)),
             ("tab:blue", "dominated", any(c not in sel.pareto and not c.failed
                                           for c in sel.candidates)),
             ("tab:gray", "over budget" if budgeted else "significantly less accurate",
              any(c.failed for c in sel.candidates))]
    return [(col, label) for col, label, present in kinds if present]


def _one_model(sel: Selection) -> bool:
    return len({c.row["model"] for c in sel.candidates}) == 1


def latency_plot(target: str, rows: list[dict[str, Any]]) -> Figure | None:
    """Latency distribution per variant from the stored quantiles (5% steps)."""
    rows = [r for r in rows if (r.get("latency_ms") or {}).get("quantiles")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5), dpi=110)
    for i, r in enumerate(rows):
        q = r["latency_ms"]["quantiles"]  # 0, 5, ..., 100
        ax.plot([q[1], q[19]], [i, i], color="tab:blue", lw=1)  # p5..p95
        ax.plot([q[5], q[15]], [i, i], color="tab:blue", lw=6, alpha=0.6)  # p25..p75
        ax.plot([q[10]], [i], "|", color="k", ms=12)  # median
        ax.plot([r["latency_ms"]["p99"]], [i], "x", color="tab:red", ms=5)
    ax.set_yticks(range(len(rows)), [r["variant"] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency ms (thin: p5-p95, thick: p25-p75, |: median, x: p99)")
    ax.set_title(f"{target}: latency distributions", fontsize=10)
    fig.tight_layout()
    return Figure(f"latency-{target}", f"Latency distributions, {target}", _png(fig, plt))


def rtf_plot(target: str, rows: list[dict[str, Any]]) -> Figure | None:
    """Real-time factor per step variant (p50 bar, p99 tick) against the line rtf = 1."""
    rows = [r for r in rows if r.get("rtf") is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5), dpi=110)
    ys = range(len(rows))
    ax.barh(list(ys), [r["rtf"] for r in rows], color="tab:green", alpha=0.7, label="rtf (p50)")
    ax.plot([r.get("rtf_p99") or r["rtf"] for r in rows], list(ys), "x", color="tab:red",
            label="rtf p99")
    ax.axvline(1.0, color="k", lw=1, ls="--", label="real time (rtf = 1)")
    ax.set_yticks(list(ys), [r["variant"] for r in rows], fontsize=7)
    ax.set_xscale("log")
    steps = sorted({r.get("step_ms") for r in rows if r.get("step_ms")})
    ax.set_xlabel(f"step latency / {', '.join(f'{v:g}' for v in steps)} ms of stream per step "
                  "(below 1 keeps up)" + (" - EMULATED" if any(r.get("emulated") for r in rows)
                                          else ""))
    ax.set_title(f"{target}: real-time factor of step models", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return Figure(f"rtf-{target}", f"Real-time factor, {target}", _png(fig, plt))


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt(v: Any, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


ROW_COLUMNS = ["variant", "target", "runtime", "status", "size kB", "p50 ms", "p90 ms",
               "p99 ms", "rtf", "load ms", "metric", "drop", "agree"]


def _row_cells(r: dict[str, Any]) -> list[str]:
    lat = r.get("latency_ms") or {}
    rt = f"{r.get('runtime')} {r.get('runtime_version') or ''}".strip()
    status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
    return [r["variant"], r["target"] + (" (emulated)" if r.get("emulated") else ""), rt, status,
            _fmt(r["size_bytes"] / 1000 if r.get("size_bytes") else None, ".1f"),
            _fmt(lat.get("p50")),
            _fmt(lat.get("p90")), _fmt(lat.get("p99")), _fmt(r.get("rtf"), ".3g"),
            _fmt(lat.get("load"), ".3g"),
            f"{r['metric']} {_fmt(r.get('value'))}", _fmt(r.get("accuracy_drop"), "+.4f"),
            agreement_text(r)]


def build(rows: list[dict[str, Any]], budget: Budget, prefer: str = "latency",
          metric: str | None = None) -> tuple[dict[str, Selection], list[Figure]]:
    """Selections and figures for every target present in ``rows``, one per group of
    comparable rows (``groups``: model kind and evaluation file) on it."""
    targets = sorted({r["target"] for r in rows if r["target"] != "host"}) or ["host"]
    sels, figs = {}, []
    for t in targets:
        trows = [r for r in rows if r["target"] in (t, "host")]
        groups = select_groups(trows, budget, metric, prefer, target=t)
        for i, sel in enumerate(groups):
            key = t if len(groups) == 1 else f"{t}, {sel.group}"
            sels[key] = sel
            figs.append(pareto_plot(t, sel, f"pareto-{t}" + (f"-{i + 1}" if i else ""), budget))
        ok = [r for r in trows if r["status"] == "ok"]
        for fig in (latency_plot(t, ok), rtf_plot(t, ok)):
            if fig:
                figs.append(fig)
    return sels, figs


def write_report(rows: list[dict[str, Any]], out_dir: Path, budget: Budget,
                 prefer: str = "latency", metric: str | None = None,
                 title: str = "edgernn report", decision: str | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained, images inline) and ``report.md`` (+ PNGs);
    ``decision``: a decision record (Markdown, from ``edgernn compare``) to show first."""
    rows = [shown_row(r) for r in rows]  # names are data: control characters escaped
    out_dir.mkdir(parents=True, exist_ok=True)
    sels, figs = build(rows, budget, prefer, metric)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for f in figs:
        (out_dir / f"{file_part(f.name)}.png").write_bytes(f.png)
    md = _markdown(rows, sels, figs, budget, title, stamp)
    page = _html(rows, sels, figs, budget, title, stamp)
    block = verdict_block(verdict(rows, budget))  # the answer first, as bench ends with it
    if block:
        md = md.replace("\n## ", "\n## Verdict\n\n```text\n" + "\n".join(block[1:])
                        + "\n```\n\n## ", 1)
        page = page.replace("<h2>", "<h2>Verdict</h2><pre id='verdict'>"
                            + html.escape("\n".join(block[1:])) + "</pre><h2>", 1)
    if decision:
        body = decision.replace("\n#", "\n##")  # its headings one level under the report's
        md = md.replace("\n## ", f"\n{body.strip()}\n\n## ", 1)
        page = page.replace("<h2>", "<h2>Decision record</h2><pre id='decision'>"
                            + html.escape(decision.strip()) + "</pre><h2>", 1)
    (out_dir / "report.md").write_text(md)
    (out_dir / "report.html").write_text(page)
    return out_dir / "report.html", out_dir / "report.md"


FOLDED = ("Over budget: ", "Not a candidate: ")


def _split_explanation(lines: list[str]) -> tuple[list[str], list[str]]:
    """A selection's explanation: the pick and its reasons, and the long lists."""
    return ([x for x in lines if not x.startswith(FOLDED)],
            [x for x in lines if x.startswith(FOLDED)])


def _budget_text(b: Budget) -> str:
    parts = [f"latency {b.latency_stat} <= {b.max_latency_ms} ms" if b.max_latency_ms else "",
             f"size <= {b.max_size_mb} MB" if b.max_size_mb else "",
             f"drop <= {b.max_drop}" if b.max_drop is not None else "",
             f"rtf <= {b.max_rtf}" if b.max_rtf is not None else ""]
    return ", ".join(p for p in parts if p) or "none (pick the best by preference)"


def _markdown(rows, sels, figs, budget, title, stamp) -> str:
    lines = [f"# {title}", "", f"edgernn {__version__}, {stamp}. Budget: {_budget_text(budget)}.",
             ""]
    for t, sel in sels.items():
        lines += [f"## Selection for {t}", ""]
        lines += [f"- {x}" for x in sel.explanation] + [""]
    lines += ["## Measurements", "", "| " + " | ".join(ROW_COLUMNS) + " |",
              "|" + "---|" * len(ROW_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in _row_cells(r)) + " |")
    lines.append("")
    for f in figs:
        lines += [f"## {f.title}", "", f"![{f.title}]({file_part(f.name)}.png)", ""]
    devices = sorted({f"{r['target']}: {(r.get('device') or {}).get('cpu_model', '?')} "
                      f"({(r.get('device') or {}).get('machine', '?')})"
                      for r in rows if r.get("device")})
    lines += ["## Where the numbers come from", ""] + [f"- {d}" for d in devices]
    return "\n".join(lines) + "\n"


def _html(rows, sels, figs, budget, title, stamp) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}"
        ".pick{background:#e6ffe6;border:2px solid #2a2;padding:0.5em 1em}"
        ".bad{color:#b00}img{max-width:100%;border:1px solid #ddd}",
        "</style></head><body>",
        f"<h1>{e(title)}</h1><p>edgernn {e(__version__)}, {e(stamp)}. "
        f"Budget: {e(_budget_text(budget))}.</p>",
    ]
    for t, sel in sels.items():
        pick = sel.pick.name if sel.pick else "none"
        parts.append(f"<h2>Selection for {e(t)}</h2><div class='pick' id='pick-{e(t)}' "
                     f"data-pick='{e(pick)}'><ul>")
        main, rest = _split_explanation(sel.explanation)
        parts += [f"<li>{e(x)}</li>" for x in main]
        parts.append("</ul>")
        if rest:  # the long lists stay folded
            parts.append(f"<details><summary>{len(rest)} over budget / not a candidate"
                         "</summary><ul>" + "".join(f"<li>{e(x)}</li>" for x in rest)
                         + "</ul></details>")
        parts.append("</div>")
    for f in figs:
        b64 = base64.b64encode(f.png).decode()
        parts.append(f"<h2>{e(f.title)}</h2><img class='plot' id='{e(f.name)}' "
                     f"alt='{e(f.title)}' src='data:image/png;base64,{b64}'>")
    parts.append("<h2>Measurements</h2><table><tr>"
                 + "".join(f"<th>{e(c)}</th>" for c in ROW_COLUMNS) + "</tr>")
    for r in rows:
        cls = "" if r["status"] == "ok" else " class='bad'"
        parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in _row_cells(r))
                     + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
