"""The folk claims about LSTM vs GRU, held against what ``compare`` measured.

Verdict rule: a claim holds (or does not hold) only when the measured difference between the
LSTM and the GRU exceeds the noise: the spread of either contender's value across repeats
(seeds; for latencies seeds x timing trials) and, for accuracy gaps, the half-width of the
paired test's 95% interval on the evaluation samples. Inside the noise it is inconclusive.
With one seed, a quantity that changes with the seed has no spread to judge against:
inconclusive. The verdict is about the direction (or, for "nearly equal", the margin); the
detail says how the size compares with the article's number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any

from rich import box
from rich.table import Table

from edgernn.probe.metrics import HIGHER_IS_BETTER
from edgernn.results.significance import Paired, paired_test, record_values
from edgernn.study.records import Comparison, Contender, target_level

POINT_METRICS = {"accuracy", "macro_f1", "roc_auc"}  # shares: gaps in points (x100)
EQUAL_POINTS = 0.01  # "nearly equal": within 1 point (96.2 vs 96.8%; F1 0.91 vs 0.92)
EQUAL_RELATIVE = 0.01  # for error metrics: within 1% of the LSTM's error


@dataclass(frozen=True)
class Article:
    key: str
    claim: str
    article: str
    lo: float | None = None  # the article's number as a range of relative advantage
    hi: float | None = None


def _about(x: float) -> tuple[float, float]:
    """"About x": within 20% of it (about 25% -> 20-30%)."""
    return x * 0.8, x * 1.2


ARTICLES = {a.key: a for a in [
    Article("parameters", "GRU has fewer parameters", "~25% fewer", *_about(0.25)),
    Article("epoch_time", "GRU trains faster per epoch", "20-30% faster", 0.20, 0.30),
    Article("epochs_to_level", "GRU needs fewer epochs to a common level", "~25% fewer",
            *_about(0.25)),
    Article("final_gap", "final metric nearly equal", "within 1 point"),
    Article("onnx_fp32_latency", "GRU infers faster (fp32 ONNX, same run)", "~35% faster",
            *_about(0.35)),
    Article("best_latency", "GRU's best deployable variant is faster", "~35% faster",
            *_about(0.35)),
    Article("best_size", "GRU's best deployable variant is smaller", "~26% smaller (31 vs 42 MB)",
            *_about(1 - 31 / 42)),
    Article("long_gap", "LSTM has lower error on long / multi-seasonal data", "~8% lower error",
            *_about(0.08)),
]}


@dataclass
class Claim:
    dataset: str
    key: str
    claim: str
    article: str
    measured: float | None  # relative advantage in the claimed direction, or the metric gap
    measured_text: str
    holds: bool | None
    detail: str
    target: str | None = None
    difference: float | None = None  # raw difference, positive = the claimed direction
    noise: float | None = None
    values: dict[str, list[float]] = field(default_factory=dict)
    tests: list[dict[str, Any]] = field(default_factory=list)  # paired tests, one per seed

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "does not hold", None: "inconclusive"}[self.holds]

    def to_dict(self) -> dict[str, Any]:
        a = ARTICLES[self.key]
        return {"dataset": self.dataset, "claim": self.claim, "key": self.key,
                "target": self.target, "article": self.article,
                "article_range": [a.lo, a.hi] if a.lo is not None else None,
                "measured": self.measured, "measured_text": self.measured_text,
                "holds": self.holds, "verdict": self.verdict, "detail": self.detail,
                "difference": self.difference, "noise": self.noise, "values": self.values,
                "paired_tests": self.tests}


def spread(values: list[float]) -> float | None:
    """Range across repeats; None with fewer than two."""
    return max(values) - min(values) if len(values) >= 2 else None


def verdict(difference: float, noise: float | None) -> bool | None:
    """``difference`` > 0 is the claimed direction. Holds when it exceeds the noise, does not
    hold when the opposite does, inconclusive inside it (or with no noise estimate)."""
    if noise is None:
        return None
    if difference > noise:
        return True
    if difference < -noise:
        return False
    return None


def verdict_within(gap: float, margin: float, noise: float | None) -> bool | None:
    """"Nearly equal": holds when the gap stays within the margin even at the edge of the
    noise, does not hold when it exceeds the margin even so, inconclusive otherwise."""
    if noise is None:
        return None
    if abs(gap) + noise <= margin:
        return True
    if abs(gap) - noise > margin:
        return False
    return None


def _noise(sides: list[list[float]], deterministic: bool,
           extra: list[float] = ()) -> float | None:  # type: ignore[assignment]
    spreads = [spread(v) for v in sides]
    if any(s is None for s in spreads):
        if not deterministic:
            return None
        spreads = [s or 0.0 for s in spreads]
    return max([*(s or 0.0 for s in spreads), *extra])


def _magnitude(rel: float, a: Article) -> str:
    if a.lo is None or a.hi is None:
        return ""
    if rel < a.lo:
        return f"; smaller than the article's {a.article}"
    if rel > a.hi:
        return f"; larger than the article's {a.article}"
    return f"; about the article's {a.article}"


def directional(dataset: str, key: str, claimed: list[float], other: list[float], *,
                words: tuple[str, str], fmt: Any, names: tuple[str, str] = ("GRU", "LSTM"),
                deterministic: bool = False, extra: list[float] = (),  # type: ignore[assignment]
                target: str | None = None, note: str = "",
                tests: list[tuple[int, Paired]] = ()) -> Claim:  # type: ignore[assignment]
    """A claim that ``claimed`` (e.g. the GRU's values) is lower than ``other``'s: the
    difference of the medians against the noise; measured = the relative saving."""
    a = ARTICLES[key]
    ca, co = median(claimed), median(other)
    diff = co - ca
    rel = diff / co if co else 0.0
    noise = _noise([claimed, other], deterministic, extra)
    holds = verdict(diff, noise)
    word = words[0] if rel >= 0 else words[1]
    text = f"{abs(rel):.1%} {word}"
    detail = f"{names[0]} {fmt(ca)} vs {names[1]} {fmt(co)}; "
    if noise is None:
        detail += "one repeat: no spread to judge against (use --seeds 3)"
    else:
        detail += (f"difference {fmt(abs(diff))}, noise {fmt(noise)} "
                   f"({min(len(claimed), len(other))} repeats)")
        if holds:
            detail += _magnitude(rel, a)
    return Claim(dataset, key, a.claim, a.article, rel, text, holds, detail + note, target,
                 diff, noise, {names[0].lower(): claimed, names[1].lower(): other},
                 [{"seed": s, **p.to_dict()} for s, p in tests])


def _by_seed(comp: Comparison, name: str) -> list[Contender]:
    return [c for s in comp.seeds for c in comp.group(s) if c.name == name]


def _paired(comp: Comparison) -> list[tuple[int, Paired]]:
    """LSTM minus GRU on the evaluation samples, per seed with per-sample records."""
    out = []
    for s in comp.seeds:
        by = {c.name: c for c in comp.group(s)}
        lstm, gru = by.get("lstm"), by.get("gru")
        if lstm and gru and lstm.per_sample and gru.per_sample:
            kind = lstm.per_sample["kind"]
            out.append((s, paired_test(record_values(lstm.per_sample),
                                       record_values(gru.per_sample), kind)))
    return out


def _tests_text(tests: list[tuple[int, Paired]], scale: float, unit: str) -> str:
    if not tests:
        return ""
    s, t = tests[0]
    sig = sum(p.significant for _, p in tests)
    more = f"; {sig} of {len(tests)} seeds significant" if len(tests) > 1 else ""
    return f"; LSTM - GRU, seed {s}: {t.describe(scale, unit)}{more}"


def final_gap(comp: Comparison) -> Claim:
    metric = comp.metric
    a = ARTICLES["final_gap"]
    lstm = [c.final for c in _by_seed(comp, "lstm")]
    gru = [c.final for c in _by_seed(comp, "gru")]
    points = metric in POINT_METRICS
    scale, unit = (100.0, " points") if points else (1.0, "")
    gap = median(lstm) - median(gru)
    margin = EQUAL_POINTS if points else EQUAL_RELATIVE * abs(median(lstm))
    tests = _paired(comp)
    if metric not in ("accuracy", "mae"):  # per-sample records are of the primary metrics
        tests = []
    noise = _noise([lstm, gru], False, [(p.high - p.low) / 2 for _, p in tests])
    holds = verdict_within(gap, margin, noise)
    better = "LSTM" if (gap > 0) == HIGHER_IS_BETTER.get(metric, True) else "GRU"
    text = (f"{gap * scale:+.2f}{unit}" if points else f"{gap:+.3g} ({gap / median(lstm):+.1%})")
    text += f" ({better} better)" if gap else ""
    detail = (f"{metric} LSTM {median(lstm):.4g} vs GRU {median(gru):.4g}; margin "
              f"{margin * scale:.3g}{unit.removesuffix('s') if points else unit}, ")
    detail += ("one seed: no spread to judge against (use --seeds 3)" if noise is None
               else f"noise {noise * scale:.3g}{unit} (seeds, paired interval)")
    detail += _tests_text(tests, scale, unit)
    return Claim(comp.dataset, "final_gap", f"final {metric} nearly equal", a.article, gap,
                 text, holds, detail, None, gap, noise, {"lstm": lstm, "gru": gru},
                 [{"seed": s, **p.to_dict()} for s, p in tests])


def long_gap(comp: Comparison) -> Claim | None:
    """On long or multi-seasonal data only: is the LSTM's error lower than the GRU's?"""
    if not comp.long_reason:
        return None
    metric = comp.metric
    better = HIGHER_IS_BETTER.get(metric, True)

    def err(c: Contender) -> float:
        return 1 - c.final if better else c.final

    tests = _paired(comp) if metric in ("accuracy", "mae") else []
    name = "error rate (1 - accuracy)" if better else metric
    return directional(comp.dataset, "long_gap", [err(c) for c in _by_seed(comp, "lstm")],
                       [err(c) for c in _by_seed(comp, "gru")],
                       words=("lower error", "higher error"), fmt=lambda v: f"{v:.4g}",
                       names=("LSTM", "GRU"), extra=[(p.high - p.low) / 2 for _, p in tests],
                       tests=tests,
                       note=f"; {name} on {comp.long_reason}"
                       + _tests_text(tests, 100.0 if better else 1.0,
                                     " points" if better else ""))


def _rows_for(comp: Comparison, c: Contender, target: str, variant: str) -> list[dict[str, Any]]:
    return [r for r in comp.rows if r.get("model") == c.bench_model and r.get("target") == target
            and r.get("variant") == f"{c.bench_model}/{variant}" and r.get("status") == "ok"
            and r.get("latency_ms")]


def _trials(lat: dict[str, Any]) -> list[float]:
    """A row's p50 per timing trial (one value with one trial)."""
    if lat.get("trial_p50"):
        return [float(v) for v in lat["trial_p50"]]
    return [float(lat["p50"])] if lat.get("p50") is not None else []


def _ms(v: float) -> str:
    return f"{v:.3g} ms"


def bench_claims(comp: Comparison) -> list[Claim]:
    """fp32 ONNX latency and each contender's best deployable variant, per target."""
    targets = sorted({r["target"] for r in comp.rows if r.get("target") != "host"})
    if not targets:
        return [Claim(comp.dataset, k, ARTICLES[k].claim, ARTICLES[k].article, None, "-", None,
                      "not benched (--no-bench)") for k in ("onnx_fp32_latency", "best_latency",
                                                            "best_size")]
    claims = []
    lstm, gru = _by_seed(comp, "lstm"), _by_seed(comp, "gru")
    for t in targets:
        lat = {n: [v for c in cs for r in _rows_for(comp, c, t, "onnx-fp32")
                   for v in _trials(r["latency_ms"])] for n, cs in (("lstm", lstm), ("gru", gru))}
        a = ARTICLES["onnx_fp32_latency"]
        if lat["lstm"] and lat["gru"]:
            claims.append(directional(comp.dataset, "onnx_fp32_latency", lat["gru"], lat["lstm"],
                                      words=("faster", "slower"), fmt=_ms, target=t,
                                      note="; repeats: seeds x timing trials"))
        else:
            claims.append(Claim(comp.dataset, a.key, a.claim, a.article, None, "-", None,
                                f"no ONNX fp32 row on {t} for both (bench with --format onnx)",
                                t))
        picks = {n: [c.best.get(t) or {} for c in cs] for n, cs in (("lstm", lstm), ("gru", gru))}
        if not all(p.get("variant") for ps in picks.values() for p in ps):
            why = next((p.get("why") for ps in picks.values() for p in ps if not p.get("variant")),
                       "no pick")
            for k in ("best_latency", "best_size"):
                claims.append(Claim(comp.dataset, k, ARTICLES[k].claim, ARTICLES[k].article, None,
                                    "-", None, f"no deployable pick on {t}: {why}", t))
            continue

        def names(ps: list[dict[str, Any]]) -> str:
            return ", ".join(dict.fromkeys(p["variant"].split("/", 1)[-1] for p in ps))

        note = f"; on {t}: GRU {names(picks['gru'])}, LSTM {names(picks['lstm'])}"
        claims.append(directional(
            comp.dataset, "best_latency",
            [v for p in picks["gru"] for v in p.get("trial_p50") or [p["latency_ms"]]],
            [v for p in picks["lstm"] for v in p.get("trial_p50") or [p["latency_ms"]]],
            words=("faster", "slower"), fmt=_ms, target=t, note=note))
        claims.append(directional(
            comp.dataset, "best_size", [float(p["size_bytes"]) for p in picks["gru"]],
            [float(p["size_bytes"]) for p in picks["lstm"]], words=("smaller", "larger"),
            fmt=lambda v: f"{v / 1e3:.1f} kB", deterministic=True, target=t, note=note))
    return claims


def build_claims(comp: Comparison) -> list[Claim]:
    """Every claim for one dataset, from the contenders of every seed and the bench rows."""
    lstm, gru = _by_seed(comp, "lstm"), _by_seed(comp, "gru")
    if not lstm or not gru:
        return []
    ds = comp.dataset
    claims = [directional(ds, "parameters", [c.parameters for c in gru],
                          [c.parameters for c in lstm], words=("fewer", "more"),
                          fmt=lambda v: f"{v:,.0f}", deterministic=True,
                          note="; head counted on both sides"),
              directional(ds, "epoch_time", [c.s_per_epoch_min for c in gru],
                          [c.s_per_epoch_min for c in lstm], words=("faster", "slower"),
                          fmt=lambda v: f"{v:.3g} s",
                          note="; fastest epoch per seed, trained in lockstep")]
    levels = {s: target_level(comp.group(s)) for s in comp.seeds}
    ep = {n: [float(c.epochs_to(levels[c.seed]) or 0) for c in cs]
          for n, cs in (("lstm", lstm), ("gru", gru))}
    claims.append(directional(ds, "epochs_to_level", ep["gru"], ep["lstm"],
                              words=("fewer", "more"), fmt=lambda v: f"{v:g}",
                              note=f"; level {comp.metric} "
                                   + ", ".join(f"{v:.4g}" for v in levels.values())
                                   + " per seed (reached by all)"))
    claims.append(final_gap(comp))
    claims += bench_claims(comp)
    lg = long_gap(comp)
    if lg is not None:
        claims.append(lg)
    return claims


def claims_table(comp: Comparison, claims: list[Claim]) -> Table:
    """One line per claim; fits 120 columns (only the measured and detail cells wrap)."""
    seeds = ", ".join(map(str, comp.seeds))
    t = Table(title=f"{comp.dataset}: folk claims, GRU vs LSTM (medians over seeds {seeds}; "
                    f"{comp.seq_len} steps, {comp.samples[0]} training / {comp.samples[1]} "
                    "held-out samples)",
              header_style="bold", title_justify="left", caption_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("claim", no_wrap=True, max_width=26)
    t.add_column("article", max_width=14)
    t.add_column("measured", max_width=17)
    t.add_column("verdict", no_wrap=True)
    t.add_column("detail", ratio=1, min_width=40)
    style = {True: "green", False: "red", None: "yellow"}
    for c in claims:
        label = SHORT[c.key] + (f" {c.target}" if c.target else "")
        t.add_row(label, c.article, c.measured_text, f"[{style[c.holds]}]{c.verdict}[/]",
                  c.detail)
    t.caption = ("verdict: holds / does not hold only when the LSTM-GRU difference exceeds the "
                 "noise (spread across seeds; latencies: seeds x timing trials; gaps: also the "
                 "paired 95% interval on the held-out samples); otherwise inconclusive")
    return t


SHORT = {"parameters": "parameters", "epoch_time": "time per epoch",
         "epochs_to_level": "epochs to level", "final_gap": "final metric gap",
         "onnx_fp32_latency": "fp32 ONNX latency", "best_latency": "best variant latency",
         "best_size": "best variant size", "long_gap": "long-data error gap"}
