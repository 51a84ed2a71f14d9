"""Choosing what to ship: Pareto set over (latency, size, accuracy drop) and a pick under
budgets, explained in plain words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgernn.probe.metrics import degradation
from edgernn.results.significance import higher_is_better

LATENCY_STATS = ("p50", "p90", "p99", "mean")
PREFER = ("latency", "size", "accuracy")
TIE = 0.05  # relative latency difference counted as equal (timing noise) when picking


@dataclass
class Budget:
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_drop: float | None = None
    latency_stat: str = "p50"
    max_rtf: float | None = None  # step models: latency / stream time of one step


@dataclass
class Candidate:
    row: dict[str, Any]
    latency: float
    size_mb: float
    drop: float
    value: float
    failed: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.row["variant"]

    def point(self) -> tuple[float, float, float]:
        return (self.latency, self.size_mb, self.drop)


@dataclass
class Selection:
    metric: str
    candidates: list[Candidate]
    pareto: list[Candidate]
    feasible: list[Candidate]
    pick: Candidate | None
    excluded: list[tuple[str, str]]  # (variant, why it was never a candidate)
    explanation: list[str]
    rule: str = ""  # the one-line rule that chose the pick
    group: str = ""  # which rows were ranked together (``groups.Group.label``)

    @property
    def runner_up(self) -> Candidate | None:
        """The best feasible variant after the pick."""
        return next((c for c in self.feasible if c is not self.pick), None)

    def to_dict(self) -> dict[str, Any]:
        def c(x: Candidate) -> dict[str, Any]:
            return {"variant": x.name, "target": x.row["target"], "latency_ms": x.latency,
                    "size_mb": x.size_mb, "accuracy_drop": x.drop, "metric_value": x.value,
                    "failed_budgets": x.failed}

        return {"metric": self.metric, "pick": c(self.pick) if self.pick else None,
                "pareto": [c(x) for x in self.pareto], "feasible": [c(x) for x in self.feasible],
                "candidates": [c(x) for x in self.candidates],
                "excluded": [{"variant": v, "reason": r} for v, r in self.excluded],
                "explanation": self.explanation, "rule": self.rule, "group": self.group}


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """a is no worse than b everywhere and better somewhere (all objectives minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True))


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    return [c for c in cands if not any(dominates(o.point(), c.point()) for o in cands if o is not c)]


def shippable(row: dict[str, Any]) -> bool:
    """Whether a row's file is one to ship: an exported file a target runtime loads, not a
    PyTorch run on the host (its size is a checkpoint or a state_dict)."""
    return row.get("format") != "torch" and not row["variant"].split("/")[-1].startswith("torch-")


def in_scope(row: dict[str, Any], formats: tuple[str, ...] | None,
             runtimes: tuple[str, ...] | None) -> bool:
    """Whether a row is of one of ``formats`` (a family such as ``tflite`` or a plug-in such
    as ``tflite-litert``; default: every shippable format) and ``runtimes`` (default: any)."""
    name = row["variant"].split("/")[-1]
    if formats is None:
        ok = shippable(row)
    else:
        ok = any(row.get("format") == f or name.startswith(f + "-") for f in formats)
    return ok and (runtimes is None or row.get("runtime") in runtimes)


def candidates_from_rows(
    rows: list[dict[str, Any]], metric: str | None, budget: Budget, target: str | None = None,
    formats: tuple[str, ...] | None = None, runtimes: tuple[str, ...] | None = None,
) -> tuple[str, list[Candidate], list[tuple[str, str]]]:
    """Usable rows become candidates, with the drop recomputed for ``metric`` against each
    model's fp32 PyTorch row; the others are listed with the reason they were left out.
    Only shippable files are candidates unless ``formats`` names others (``torch``)."""
    excluded: list[tuple[str, str]] = []
    metric = metric or next((r["metric"] for r in rows if r.get("metric")), "accuracy")
    # drop is measured against the BEST fp32 PyTorch model evaluated on the same data, so a
    # weak model quantized without loss does not look as good as a strong one
    higher = higher_is_better(metric, rows)  # a user's metric: its rows say which way
    sign = 1 if higher else -1
    baselines: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["variant"].endswith("/torch-fp32") and metric in (r.get("metrics") or {}):
            key = r.get("data_sha256") or ""
            best = baselines.get(key)
            if best is None or sign * r["metrics"][metric] > sign * best["metrics"][metric]:
                baselines[key] = r
    own = {r["model_sha256"] for r in rows if r["variant"].endswith("/torch-fp32")}
    cands = []
    for r in rows:
        if target is not None and r["target"] != target:
            continue  # e.g. the host's PyTorch row: a baseline, not deployable on the target
        if not in_scope(r, formats, runtimes):
            if formats is None and runtimes is None:  # the default scope: say why
                excluded.append((r["variant"], "a PyTorch run, not a file to ship (--format "
                                               "torch ranks it)"))
            continue
        if r["status"] != "ok":
            excluded.append((r["variant"], f"status {r['status']}"
                             + (f": {r['reason']}" if r.get("reason") else "")))
            continue
        metrics = r.get("metrics") or {}
        if metric not in metrics:
            excluded.append((r["variant"], f"has no {metric} (task metric is {r.get('metric')})"))
            continue
        base = baselines.get(r.get("data_sha256") or "")
        if base is None or r["model_sha256"] not in own:
            excluded.append((r["variant"], "no fp32 PyTorch baseline row to compare against"))
            continue
        lat = (r.get("latency_ms") or {}).get(budget.latency_stat)
        if lat is None or not r.get("size_bytes"):
            excluded.append((r["variant"], "no latency or size measured"))
            continue
        drop = degradation(base["metrics"][metric], metrics[metric], metric, higher)
        cands.append(Candidate(r, float(lat), r["size_bytes"] / 1e6, float(drop),
                               float(metrics[metric])))
    return metric, cands, excluded


def check_budget(c: Candidate, b: Budget, metric: str) -> list[str]:
    failed = []
    if b.max_latency_ms is not None and c.latency > b.max_latency_ms:
        failed.append(f"latency {b.latency_stat} {c.latency:.3g} ms > {b.max_latency_ms:g} ms")
    if b.max_size_mb is not None and c.size_mb > b.max_size_mb:
        failed.append(f"size {c.size_mb:.3g} MB > {b.max_size_mb:g} MB")
    if b.max_drop is not None and c.drop > b.max_drop:
        failed.append(f"{metric} drop {c.drop:+.4g} > {b.max_drop:g}")
    if b.max_rtf is not None:
        key = "rtf_p99" if b.latency_stat == "p99" else "rtf"
        rtf = c.row.get(key)
        if rtf is None:
            failed.append("no real-time factor measured (bench a step model with --step-ms)")
        elif rtf > b.max_rtf:
            failed.append(f"{key.replace('_', ' ')} {rtf:.3g} > {b.max_rtf:g} (one step takes "
                          f"{rtf:.0%} of the {c.row.get('step_ms', 0):g} ms it covers)")
    return failed


def _key(prefer: str):
    if prefer == "size":
        return lambda c: (c.size_mb, c.latency, c.drop)
    if prefer == "accuracy":
        return lambda c: (c.drop, c.latency, c.size_mb)
    return lambda c: (c.latency, c.size_mb, c.drop)


def _spread(c: Candidate) -> float:
    """Relative spread of a row's trial medians (0 for one trial)."""
    return float((c.row.get("latency_ms") or {}).get("spread") or 0.0)


def _pick(feasible: list[Candidate], prefer: str, tie: float) -> Candidate | None:
    """Best by the preferred objective; latencies within ``tie`` (relative) of the fastest,
    or within the spread between timing trials of either row, count as equal (timing noise),
    and then the smaller, more accurate variant wins."""
    if not feasible:
        return None
    if prefer != "latency":
        return feasible[0]
    fastest = min(feasible, key=lambda c: c.latency)
    group = [c for c in feasible
             if c.latency <= fastest.latency * (1 + max(tie, _spread(fastest), _spread(c)))]
    # a noisy row let in by its own spread must not shut out a faster one: everything at
    # least as fast as the slowest tie is a tie too (else the pick could be dominated)
    slowest = max(c.latency for c in group)
    group = [c for c in feasible if c.latency <= slowest]
    return min(group, key=lambda c: (c.size_mb, c.drop, c.latency))


def select(rows: list[dict[str, Any]], budget: Budget, metric: str | None = None,
           prefer: str = "latency", tie: float = TIE, target: str | None = None,
           formats: tuple[str, ...] | None = None,
           runtimes: tuple[str, ...] | None = None) -> Selection:
    """Pareto set of the usable rows (of ``target``, if given) and the best feasible one under
    ``budget``. Baselines may come from any row of the same model (the host's PyTorch row).
    ``rows`` are one group (``select_groups`` splits a mixed store)."""
    metric, cands, excluded = candidates_from_rows(rows, metric, budget, target, formats,
                                                   runtimes)
    for c in cands:
        c.failed = check_budget(c, budget, metric)
    rule: list[str] = []
    without_rule = None
    if budget.max_drop is None:  # no accuracy budget: never trade a significant loss for speed
        from edgernn.results.significance import significant_losses

        within = [c for c in cands if not c.failed]
        losses, rule = significant_losses([c.row for c in within], metric)
        without_rule = _pick(sorted(within, key=_key(prefer)), prefer, tie)
        for c in within:
            if c.name in losses:
                c.failed.append(losses[c.name])
    front = pareto_front(cands)
    feasible = sorted([c for c in cands if not c.failed], key=_key(prefer))
    pick = _pick(feasible, prefer, tie)
    lines = explain(metric, cands, front, feasible, pick, excluded, budget, prefer)
    if rule and pick is not None:
        rule.append(f"Decided by: the accuracy rule ({without_rule.name} would win on {prefer} "
                    "but is significantly less accurate)" if without_rule is not pick else
                    f"Decided by: {prefer}, among the variants whose accuracy ties")
    at = 2 if pick is not None else len(lines)  # after the pick and why
    lines[at:at] = [f"{line}." for line in rule]
    decided = (f"the accuracy rule: {without_rule.name} would win on {prefer} but is "
               "significantly less accurate" if rule and pick is not None
               and without_rule is not pick else "")
    return Selection(metric, cands, front, feasible, pick, excluded, lines,
                     decided or rule_text(prefer, len(feasible), budget))


RULES = {"latency": "fastest of {n}", "size": "smallest file of {n}",
         "accuracy": "most accurate of {n}"}


def rule_text(prefer: str, n: int, budget: Budget) -> str:
    """The rule a pick was made by, in one line: preference, field size and budgets."""
    limits = [f"{budget.latency_stat} <= {budget.max_latency_ms:g} ms"
              if budget.max_latency_ms is not None else "",
              f"size <= {budget.max_size_mb:g} MB" if budget.max_size_mb is not None else "",
              f"drop <= {budget.max_drop:g}" if budget.max_drop is not None else "",
              f"rtf <= {budget.max_rtf:g}" if budget.max_rtf is not None else ""]
    limits = [x for x in limits if x]
    text = RULES[prefer].format(n=n) + (f" within {', '.join(limits)}" if limits else "")
    if budget.max_drop is None:
        text += (" with no significant accuracy loss" if limits else
                 " without a significant accuracy loss")
    if prefer == "latency":
        text += "; within 5% or the trial spread, the smaller file"
    return text


def select_groups(rows: list[dict[str, Any]], budget: Budget, metric: str | None = None,
                  prefer: str = "latency", tie: float = TIE, target: str | None = None,
                  formats: tuple[str, ...] | None = None,
                  runtimes: tuple[str, ...] | None = None) -> list[Selection]:
    """One selection per group of comparable rows (``groups.group_rows``: a step model's
    per-step time is never ranked against whole-sequence calls, nor accuracies from different
    evaluation files); groups without a row on ``target`` are left out."""
    from edgernn.results.groups import group_rows

    out = []
    for group, members in group_rows(rows):
        if target is not None and not any(r["target"] == target for r in members):
            continue
        sel = select(members, budget, metric, prefer, tie, target, formats, runtimes)
        sel.group = group.label
        out.append(sel)
    return out


def _excess(c: Candidate, b: Budget) -> float:
    """How far over its budgets a candidate is, as the sum of relative excesses."""
    over = 0.0
    for value, limit in ((c.latency, b.max_latency_ms), (c.size_mb, b.max_size_mb),
                         (c.row.get("rtf"), b.max_rtf)):
        if limit is not None and value is not None and value > limit:
            over += value / limit - 1
    if b.max_drop is not None and c.drop > b.max_drop:
        over += (c.drop - b.max_drop) / max(abs(b.max_drop), 1e-3)
    return over


def explain(metric: str, cands: list[Candidate], front: list[Candidate],
            feasible: list[Candidate], pick: Candidate | None, excluded: list[tuple[str, str]],
            budget: Budget, prefer: str) -> list[str]:
    lines: list[str] = []
    better = "higher" if higher_is_better(metric, [c.row for c in cands]) else "lower"
    stat = budget.latency_stat
    if pick is None:
        if not cands:
            lines.append("No usable measurements: every row failed, collapsed or lacks a baseline.")
        else:
            lines.append(f"Nothing meets the budget ({len(cands)} candidate(s) measured).")
            closest = min(cands, key=lambda c: (len(c.failed), _excess(c, budget)))
            lines.append(f"Closest: {closest.name} fails {'; '.join(closest.failed)}.")
    else:
        lines.append(
            f"Pick: {pick.name} on {pick.row['target']} ({pick.row['runtime']} "
            f"{pick.row.get('runtime_version') or ''}): latency {stat} {pick.latency:.3g} ms, "
            f"{pick.size_mb:.3g} MB, {metric} {pick.value:.4g} ({better} is better; drop "
            f"{pick.drop:+.4g} vs the best fp32 PyTorch model on this data)"
            + (f"; real-time factor {pick.row['rtf']:.3g} (p99 {pick.row.get('rtf_p99') or 0:.3g}) "
               f"at {pick.row.get('step_ms', 0):g} ms of stream per step."
               if pick.row.get("rtf") is not None else ".")
        )
        why = {"latency": "fastest (latencies within 5%, or within the spread between timing "
                          "trials, count as equal; then smaller wins)",
               "size": "smallest", "accuracy": "most accurate"}[prefer]
        lines.append(f"Why: the {why} of {len(feasible)} variant(s) within budget"
                     + (", and on the Pareto front (nothing is faster, smaller and more "
                        "accurate at once)." if pick in front else "."))
        for c in [c for c in feasible if c is not pick][:3]:
            lines.append(f"Runner-up: {c.name}: {c.latency / pick.latency:.2f}x the latency, "
                         f"{c.size_mb / pick.size_mb:.2f}x the size, drop {c.drop:+.4g}.")
    for c in cands:
        if c.failed:
            lines.append(f"Over budget: {c.name}: {'; '.join(c.failed)}.")
    for v, why_not in excluded:
        lines.append(f"Not a candidate: {v}: {why_not}.")
    lines += [f"{d}." for d in op_decisions([c.row for c in cands], max_drop=budget.max_drop)]
    return lines


def _family(row: dict[str, Any], label: str) -> tuple[str, ...]:
    """What a row is a variant of: model, target and its variant name without the label
    (plugin, delegate), so an alternative meets the twin of its own format."""
    variant = row.get("variant")
    if not variant:
        return row["model"], row["target"], row.get("format", ""), ""
    base, _, sub = variant.partition("@")
    return row["model"], row["target"], base[: len(base) - len(label)], sub


def _where(row: dict[str, Any]) -> str:
    """"model on target (format plugin)" for a decision line."""
    label = row.get("quantization", "")
    variant = (row.get("variant") or "").partition("@")[0].split("/")[-1]
    plugin = variant[: len(variant) - len(label)].rstrip("-") if variant.endswith(label) else ""
    return f"{row['model']} on {row['target']}" + (f" ({plugin})" if plugin else "")


def _noise(a: dict[str, Any], b: dict[str, Any], tie: float) -> float:
    """The relative latency difference two rows cannot resolve: ``tie`` or either row's
    spread between timing trials, the larger."""
    return max(tie, _spread_of(a), _spread_of(b))


def faster(a: dict[str, Any], b: dict[str, Any], tie: float) -> float:
    """How many times faster ``a`` is than ``b``; 1.0 when inside the noise."""
    pa, pb = a["latency_ms"]["p50"], b["latency_ms"]["p50"]
    noise = _noise(a, b, tie)
    return pb / pa if pa < pb / (1 + noise) or pb < pa / (1 + noise) else 1.0


def op_decisions(rows: list[dict[str, Any]], tie: float = TIE,
                 max_drop: float | None = None) -> list[str]:
    """For each alternative variant measured beside its twin on the same target (registered by
    the quantizers: an op class kept fp32, or another quantization setting), which to keep:
    by latency at no accuracy cost (or within ``max_drop``), then by size."""
    from edgernn.convert.quantize import alternatives

    alts = alternatives()
    ok = [r for r in rows if r.get("status") == "ok" and r.get("latency_ms")]
    lines: list[str] = []
    settings: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in ok:
        spec = alts.get(r.get("quantization", ""))
        if spec is None:
            continue
        twin_label, change, kind = spec
        fam = _family(r, r["quantization"])
        twin = next((t for t in ok if t.get("quantization") == twin_label
                     and _family(t, twin_label) == fam), None)
        if twin is None:
            continue
        if kind == "setting":
            settings.setdefault(fam, [twin]).append(r)
        else:
            lines.append("Per-op: " + _op_verdict(twin, r, change.split(" kept")[0], tie))
    for group in settings.values():
        lines.append("Settings: " + _setting_verdict(group, alts, tie, max_drop))
    return lines


def _op_verdict(twin: dict[str, Any], r: dict[str, Any], op: str, tie: float) -> str:
    a, b = twin["latency_ms"]["p50"], r["latency_ms"]["p50"]
    speed = faster(r, twin, tie)  # > 1: the fp32-op variant is faster
    da, db = twin.get("accuracy_drop") or 0.0, r.get("accuracy_drop") or 0.0
    if speed > 1 and db <= da + 1e-9:
        verdict = f"keep {op} fp32 (int8 {op} is {a / b:.2f}x slower, no more accurate)"
    elif speed < 1 and da <= db + 1e-9:
        verdict = f"keep {op} int8 ({b / a:.2f}x faster than fp32 {op}, as accurate)"
    elif speed == 1 and da <= db + 1e-9:
        noise = _noise(twin, r, tie)
        sa, sb = (twin.get("size_bytes") or 0) / 1e3, (r.get("size_bytes") or 0) / 1e3
        verdict = (f"keep {op} int8 (latency equal within {noise:.0%}, {sb:.1f} -> {sa:.1f} kB)"
                   if sa < sb else
                   f"keep {op} fp32 (latency equal within {noise:.0%}, and int8 {op} saves no "
                   f"space: {sb:.1f} -> {sa:.1f} kB)")
    else:
        verdict = f"keep {op} fp32 (int8 {op} costs accuracy: drop {da:+.4f} vs {db:+.4f})"
    return (f"{_where(r)}: {op} int8 p50 {a:.3g} ms vs {op} fp32 "
            f"{b:.3g} ms, drop {da:+.4f} vs {db:+.4f}: {verdict}")


def _setting_verdict(group: list[dict[str, Any]], alts: dict[str, tuple[str, str, str]],
                     tie: float, max_drop: float | None) -> str:
    """The default setting and its alternatives: keep the fastest whose drop is within
    ``max_drop`` (without one: no worse than the default's), ties to the smaller file."""
    default = group[0]
    limit = max_drop if max_drop is not None else (default.get("accuracy_drop") or 0.0) + 1e-9

    def name(r: dict[str, Any]) -> str:
        return "default" if r is default else alts[r["quantization"]][1]

    fits = [r for r in group if (r.get("accuracy_drop") or 0.0) <= limit]
    best = None
    for r in fits:
        if best is None:
            best = r
            continue
        speed = faster(r, best, tie)
        if speed > 1 or (speed == 1 and (r.get("size_bytes") or 0) < (best.get("size_bytes") or 0)):
            best = r
    tried = "; ".join(f"{name(r)} {r['latency_ms']['p50']:.3g} ms, "
                      f"{(r.get('size_bytes') or 0) / 1e3:.1f} kB, drop {r.get('accuracy_drop') or 0:+.4f}"
                      for r in group)
    bound = f"drop <= {max_drop:g}" if max_drop is not None else "no more drop than the default"
    kept = (f"keep {name(best)}" + (f" ({best['quantization']})" if best is not default else "")
            if best is not None else "none fits")
    return (f"{_where(default)}: {default['quantization']} settings tried: "
            f"{tried}; {kept} (fastest with {bound}; within {tie:.0%} or the trial spread, smaller "
            "wins)")


def _spread_of(row: dict[str, Any]) -> float:
    return float((row.get("latency_ms") or {}).get("spread") or 0.0)
