"""The answer a bench ends with: per model and target, the variant to ship and the rule that
chose it (``select``'s own), its runner-up and what that trades; with several models of one
kind judged on the same data, how their picks compare, with the accuracy difference's
significance (``significance``)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

from edgernn.results.groups import group_rows
from edgernn.results.selection import TIE, Budget, Candidate, Selection, faster, select
from edgernn.results.significance import Paired, compare_rows, unpaired_accuracy


@dataclass
class Verdict:
    """Lines to print and the same content as data (``verdict.json``)."""

    lines: list[str] = field(default_factory=list)
    picks: list[dict[str, Any]] = field(default_factory=list)
    contests: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"picks": self.picks, "contests": self.contests, "lines": self.lines}


def _short(c: Candidate, metric: str, per_step: bool) -> str:
    rtf = f", rtf {c.row['rtf']:.3g}" if c.row.get("rtf") is not None else ""
    return (f"{c.latency:.3g} ms{' per step' if per_step else ''}{rtf}, "
            f"{c.size_mb * 1e3:.1f} kB, {metric} {c.value:.4g}, drop {c.drop:+.4f}")


def _command(target: str, model: str | None, budget: Budget) -> str:
    return (f"edgernn select --target {target}" + (f" --model {model}" if model else "")
            + (f" --max-drop {budget.max_drop:g}" if budget.max_drop is not None else ""))


def accuracy_test(a: dict[str, Any], b: dict[str, Any], metric: str) -> Paired | None:
    """A minus B on the same evaluation samples: paired when both rows carry per-sample
    records, else (accuracy) the unpaired interval; None when neither can be made."""
    t = compare_rows(a, b, metric)
    if t is None and metric == "accuracy" and a.get("eval_samples") and b.get("eval_samples"):
        t = unpaired_accuracy(a["metrics"][metric], int(a["eval_samples"]),
                              b["metrics"][metric], int(b["eval_samples"]))
    return t


def _contest(win: Candidate, other: Candidate, metric: str, target: str) -> tuple[str, dict]:
    """One line: the winning model's pick against another model's pick."""
    speed = faster(win.row, other.row, TIE)
    lat = (f"{win.latency / other.latency:.2f}x the latency"
           + (" (within the timing noise)" if speed == 1.0 else ""))
    t = accuracy_test(win.row, other.row, metric)
    if t is None:
        acc = f"{metric} {win.value:.4g} vs {other.value:.4g} (no paired test possible)"
    else:
        scale, unit = (100.0, " points") if metric == "accuracy" else (1.0, "")
        acc = f"{metric} {win.value:.4g} vs {other.value:.4g}: {t.describe(scale, unit)}"
    a, b = win.row["model"], other.row["model"]
    line = (f"{a} vs {b} on {target}: ship {win.name}: {lat} of {b}'s pick, "
            f"{win.size_mb / other.size_mb:.2f}x its size\n  {acc}")
    data = {"target": target, "winner": win.name, "other": other.name,
            "latency_ratio": win.latency / other.latency, "within_noise": speed == 1.0,
            "size_ratio": win.size_mb / other.size_mb, "metric": metric,
            "test": t.to_dict() if t else None}
    return line, data


def verdict(rows: list[dict[str, Any]], budget: Budget | None = None) -> Verdict:
    """The verdict block over a bench's rows: for each target, each group of comparable rows
    (model kind, evaluation file) and each model in it, ``select``'s pick; then, when a group
    holds several models, the overall pick against every other model's pick."""
    budget = budget or Budget()
    v = Verdict()
    targets = sorted({r["target"] for r in rows if r["target"] != "host"}) or ["host"]
    for t in targets:
        trows = [r for r in rows if r["target"] in (t, "host")]
        groups = [(g, m) for g, m in group_rows(trows) if any(r["target"] == t for r in m)]
        for group, members in groups:
            per_step = group.kind == "step"
            if len(groups) > 1:
                v.lines.append(f"{group.label}:")
            picks: dict[str, Selection] = {}
            for model in group.models:
                mine = [r for r in members if r["model"] == model]
                sel = select(mine, budget, target=t)
                picks[model] = sel
                v.picks.append({"model": model, "target": t, "group": group.label,
                                "command": _command(t, model, budget), **sel.to_dict()})
                v.lines += _model_lines(model, t, sel, per_step)
            if len(group.models) > 1:
                overall = select(members, budget, target=t)
                if overall.pick is None:
                    v.lines.append(f"{' vs '.join(group.models)} on {t}: no pick ("
                                   f"{overall.explanation[0]})")
                    continue
                win = overall.pick
                for model, sel in picks.items():
                    if model == win.row["model"] or sel.pick is None:
                        continue
                    line, data = _contest(win, sel.pick, overall.metric, t)
                    v.lines.append(line)
                    v.contests.append(data | {"command": _command(t, None, budget)})
    return v


def _model_lines(model: str, target: str, sel: Selection, per_step: bool) -> list[str]:
    """Pick, rule and runner-up of one model on one target."""
    if sel.pick is None:
        why = sel.explanation[1] if len(sel.explanation) > 1 else sel.explanation[0]
        return [f"{model} on {target}: nothing to ship ({sel.explanation[0].rstrip('.')}); "
                f"{why}"]
    p = sel.pick
    emulated = "; EMULATED: not device latency" if p.row.get("emulated") else ""
    lines = [f"{model} on {target}: ship {p.name.split('/', 1)[-1]} "
             f"({_short(p, sel.metric, per_step)}{emulated})",
             f"  rule: {sel.rule}"]
    r = sel.runner_up
    if r is not None:
        lines.append(f"  runner-up: {r.name.split('/', 1)[-1]}: {r.latency / p.latency:.2f}x the "
                     f"latency, {r.size_mb / p.size_mb:.2f}x the size, drop {r.drop:+.4f}")
    return lines


def verdict_block(v: Verdict, command_hint: str = "", width: int = 120) -> list[str]:
    """The printed block: a heading and the lines, wrapped at ``width`` with their indent."""
    if not v.lines:
        return []
    head = ("Verdict (what edgernn select picks from these rows"
            + (f"; {command_hint}" if command_hint else "") + "):")
    out = [head]
    for line in v.lines:
        for part in line.split("\n"):
            indent = " " * (2 + len(part) - len(part.lstrip()))
            out += textwrap.wrap(part.strip(), width, initial_indent=indent,
                                 subsequent_indent=indent + "  ", break_on_hyphens=False)
    return out
