"""The folk claims about LSTM vs GRU, held against what ``compare`` measured.

Verdict rule: every claim is a difference between the LSTM and the GRU with a 95% interval
(``edgernn.study.intervals``): paired by seed (seed k's LSTM and GRU were trained together
from the same seed), and for a metric on evaluation samples also over the samples both saw.
A directional claim ("the GRU is faster") holds when the whole interval lies above the
smallest advantage that counts (``MEANINGFUL``: 5% of the other side's value, the margin
inside which ``select`` calls two latencies equal) and does not hold when it lies wholly
below it (the other way round, or an advantage too small to matter); "nearly equal" holds
when the interval lies within the margin and does not when it lies outside. Inconclusive
only when the interval straddles the threshold, and the interval is printed. Parameter
counts and file sizes have no randomness: exact. One seed gives a seed-dependent quantity no
interval (inconclusive).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean, median
from typing import Any

from rich import box
from rich.table import Table

from edgernn.probe.metrics import HIGHER_IS_BETTER
from edgernn.results.selection import TIE
from edgernn.results.significance import Paired, paired_test, record_values
from edgernn.study.intervals import (
    Interval,
    directional_verdict,
    exact,
    paired_seeds,
    paired_seeds_and_samples,
    within_verdict,
)
from edgernn.study.records import Comparison, Contender, target_level

POINT_METRICS = {"accuracy", "macro_f1", "roc_auc"}  # shares: gaps in points (x100)
EQUAL_POINTS = 0.01  # "nearly equal": within 1 point (96.2 vs 96.8%; F1 0.91 vs 0.92)
EQUAL_RELATIVE = 0.01  # for error metrics: within 1% of the LSTM's error
# a directional claim ("GRU faster / fewer / smaller") needs an advantage above this share of
# the other side's value: select's tie (latencies within 5% are equal when picking)
MEANINGFUL = TIE


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

# the article's own figures for one task, shown beside the measured ones (dataset, claim key)
FIGURES = {
    ("kws", "final_gap"): ("accuracy", "GRU 96.2% vs LSTM 96.8% accuracy"),
    ("kws", "onnx_fp32_latency"): (None, "GRU ~35% faster at inference"),
    ("sentiment", "final_gap"): ("macro_f1", "F1 GRU 0.91 vs LSTM 0.92"),
}


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
    interval: Interval | None = None  # the difference's 95% interval (same units)
    values: dict[str, list[float]] = field(default_factory=dict)
    tests: list[dict[str, Any]] = field(default_factory=list)  # paired tests, one per seed
    figure: str | None = None  # the article's figure for this task, where it gives one
    measured_figure: str | None = None  # the measured numbers in the figure's terms

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "does not hold", None: "inconclusive"}[self.holds]

    def to_dict(self) -> dict[str, Any]:
        a = ARTICLES[self.key]
        return {"dataset": self.dataset, "claim": self.claim, "key": self.key,
                "target": self.target, "article": self.article,
                "article_range": [a.lo, a.hi] if a.lo is not None else None,
                "article_figure": self.figure, "measured_figure": self.measured_figure,
                "measured": self.measured, "measured_text": self.measured_text,
                "holds": self.holds, "verdict": self.verdict, "detail": self.detail,
                "difference": self.difference,
                "interval": self.interval.to_dict() if self.interval else None,
                "values": self.values, "paired_tests": self.tests}


def _magnitude(rel: float, a: Article) -> str:
    if a.lo is None or a.hi is None:
        return ""
    if rel < a.lo:
        return f"; smaller than the article's {a.article}"
    if rel > a.hi:
        return f"; larger than the article's {a.article}"
    return f"; about the article's {a.article}"


def _rel_range(lo: float, hi: float, words: tuple[str, str]) -> str:
    """A relative interval in the claim's words: ``12-30% faster``, ``5-9% slower`` or
    ``4% slower to 20% faster``."""
    if lo >= 0:
        return f"{lo:.0%}-{hi:.0%} {words[0]}"
    if hi <= 0:
        return f"{-hi:.0%}-{-lo:.0%} {words[1]}"
    return f"{-lo:.0%} {words[1]} to {hi:.0%} {words[0]}"


def _interval_text(iv: Interval | None, fmt: Any) -> str:
    if iv is None:
        return "one seed: no interval to judge with (use --seeds 5)"
    if iv.low == iv.high:
        return f"difference {fmt(iv.estimate)}, exact"
    return f"difference {fmt(iv.estimate)}, 95% [{fmt(iv.low)}, {fmt(iv.high)}] ({iv.method})"


def directional(dataset: str, key: str, claimed: list[float], other: list[float], *,
                words: tuple[str, str], fmt: Any, names: tuple[str, str] = ("GRU", "LSTM"),
                deterministic: bool = False, interval: Interval | None = None,
                target: str | None = None, note: str = "",
                tests: list[tuple[int, Paired]] = ()) -> Claim:  # type: ignore[assignment]
    """A claim that ``claimed`` (e.g. the GRU's values, one per seed) is lower than
    ``other``'s: the paired per-seed difference ``other - claimed`` with its 95% interval
    (``interval`` when the caller computed one over samples too); measured = the relative
    saving against ``other``'s mean."""
    a = ARTICLES[key]
    ca, co = mean(claimed), mean(other)
    if deterministic and len(set(claimed)) == 1 and len(set(other)) == 1:
        iv: Interval | None = exact(co - ca)
    else:
        iv = interval or paired_seeds(claimed, other)
    diff = iv.estimate if iv is not None else co - ca
    rel = diff / co if co else 0.0
    margin = MEANINGFUL * abs(co)
    holds = directional_verdict(iv, margin)
    word = words[0] if rel >= 0 else words[1]
    text = f"{abs(rel):.1%} {word}"
    if iv is not None and iv.low != iv.high and co:
        text += f" (95%: {_rel_range(iv.low / co, iv.high / co, words)})"
    detail = f"{names[0]} {fmt(ca)} vs {names[1]} {fmt(co)}; {_interval_text(iv, fmt)}"
    if holds:
        detail += _magnitude(rel, a)
    elif holds is False and iv is not None and iv.high > 0:
        detail += (f"; any advantage is below {MEANINGFUL:.0%} ({fmt(margin)}), the smallest "
                   f"that counts")
    elif holds is None and iv is not None and iv.low > 0:
        detail += (f"; {words[0]}, but perhaps by less than {MEANINGFUL:.0%} ({fmt(margin)}), "
                   f"the smallest advantage that counts")
    return Claim(dataset, key, a.claim, a.article, rel, text, holds, detail + note, target,
                 diff, iv, {names[0].lower(): list(claimed), names[1].lower(): list(other)},
                 [{"seed": s, **p.to_dict()} for s, p in tests])


def _by_seed(comp: Comparison, name: str) -> list[Contender]:
    return [c for s in comp.seeds for c in comp.group(s) if c.name == name]


def _pairs(comp: Comparison) -> list[tuple[int, Contender, Contender]]:
    """(seed, LSTM, GRU) for every seed with both."""
    out = []
    for s in comp.seeds:
        by = {c.name: c for c in comp.group(s)}
        if "lstm" in by and "gru" in by:
            out.append((s, by["lstm"], by["gru"]))
    return out


def _paired(comp: Comparison) -> list[tuple[int, Paired]]:
    """LSTM minus GRU on the evaluation samples, per seed with per-sample records."""
    out = []
    for s, lstm, gru in _pairs(comp):
        if lstm.per_sample and gru.per_sample:
            kind = lstm.per_sample["kind"]
            out.append((s, paired_test(record_values(lstm.per_sample),
                                       record_values(gru.per_sample), kind)))
    return out


def _samples(comp: Comparison) -> list[tuple[Any, Any]]:
    """Per seed, the LSTM's and the GRU's per-sample values (correctness or errors); empty
    unless every seed has both records."""
    pairs = _pairs(comp)
    if not pairs or not all(lstm.per_sample and gru.per_sample for _, lstm, gru in pairs):
        return []
    return [(record_values(lstm.per_sample), record_values(gru.per_sample))
            for _, lstm, gru in pairs]


def _tests_text(tests: list[tuple[int, Paired]]) -> str:
    if not tests:
        return ""
    sig = sum(p.significant for _, p in tests)
    return f"; per seed, {sig} of {len(tests)} paired tests significant"


def _figure(comp: Comparison, key: str) -> tuple[str | None, str | None]:
    """The article's figure for this task and the measured one in its terms."""
    metric, figure = FIGURES.get((comp.dataset, key), (None, None))
    if figure is None or metric is None:
        return figure, None
    vals = {n: mean(c.final_metrics.get(metric, float("nan")) for c in _by_seed(comp, n))
            for n in ("gru", "lstm")}
    if metric == "accuracy":
        return figure, f"GRU {vals['gru']:.1%} vs LSTM {vals['lstm']:.1%} accuracy"
    name = "F1" if metric == "macro_f1" else metric
    return figure, f"{name} GRU {vals['gru']:.2f} vs LSTM {vals['lstm']:.2f}"


def final_gap(comp: Comparison) -> Claim:
    """"Final metric nearly equal": LSTM minus GRU over seeds and evaluation samples."""
    metric = comp.metric
    a = ARTICLES["final_gap"]
    pairs = _pairs(comp)
    lstm = [p[1].final for p in pairs]
    gru = [p[2].final for p in pairs]
    points = metric in POINT_METRICS
    scale, unit = (100.0, " points") if points else (1.0, "")
    tests = _paired(comp) if metric in ("accuracy", "mae") else []
    samples = _samples(comp) if metric in ("accuracy", "mae") else []
    # no per-sample records: the seeds alone
    iv = paired_seeds_and_samples(samples) if samples else paired_seeds(gru, lstm)
    gap = iv.estimate if iv is not None else (mean(lstm) - mean(gru) if lstm else 0.0)
    margin = EQUAL_POINTS if points else EQUAL_RELATIVE * abs(mean(lstm) if lstm else 0.0)
    holds = within_verdict(iv, margin)
    better = "LSTM" if (gap > 0) == HIGHER_IS_BETTER.get(metric, True) else "GRU"
    ref = abs(mean(lstm)) if lstm else 0.0
    text = (f"{gap * scale:+.2f}{unit}" if points
            else f"{gap:+.3g} ({gap / ref:+.1%})" if ref else f"{gap:+.3g}")
    if iv is not None and iv.low != iv.high:
        text += (f" [{iv.low * scale:+.2f}, {iv.high * scale:+.2f}]" if points
                 else f" [{iv.low:+.3g}, {iv.high:+.3g}]")
    text += f" ({better} better)" if gap else ""
    fmt = ((lambda v: f"{v * scale:+.3g}{unit}") if points else (lambda v: f"{v:+.4g}"))
    detail = (f"{metric} LSTM {mean(lstm):.4g} vs GRU {mean(gru):.4g} (means over seeds); margin "
              f"{margin * scale:.3g}{unit.removesuffix('s') if points else unit}; "
              + _interval_text(iv, fmt) + _tests_text(tests))
    figure, measured_figure = _figure(comp, "final_gap")
    return Claim(comp.dataset, "final_gap", f"final {metric} nearly equal", a.article, gap,
                 text, holds, detail, None, gap, iv, {"lstm": lstm, "gru": gru},
                 [{"seed": s, **p.to_dict()} for s, p in tests], figure, measured_figure)


def long_gap(comp: Comparison) -> Claim | None:
    """On long or multi-seasonal data only: is the LSTM's error lower than the GRU's?"""
    if not comp.long_reason:
        return None
    metric = comp.metric
    better = HIGHER_IS_BETTER.get(metric, True)

    def err(c: Contender) -> float:
        return 1 - c.final if better else c.final

    pairs = _pairs(comp)
    tests = _paired(comp) if metric in ("accuracy", "mae") else []
    samples = _samples(comp) if metric in ("accuracy", "mae") else []
    iv = None
    if samples:  # GRU error - LSTM error: correctness LSTM - GRU, or errors GRU - LSTM
        iv = paired_seeds_and_samples(samples if better else [(g, s) for s, g in samples])
    name = "error rate (1 - accuracy)" if better else metric
    return directional(comp.dataset, "long_gap", [err(p[1]) for p in pairs],
                       [err(p[2]) for p in pairs], words=("lower error", "higher error"),
                       fmt=lambda v: f"{v:.4g}", names=("LSTM", "GRU"), interval=iv,
                       tests=tests,
                       note=f"; {name} on {comp.long_reason}"
                       + _tests_text(tests))


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


def _latencies(per_seed: list[list[float]]) -> list[float]:
    """One latency per seed (the median of its timing trials); with one seed, the trials
    themselves (interleaved with the other side's: paired by trial)."""
    if len(per_seed) == 1:
        return list(per_seed[0])
    return [median(v) for v in per_seed]


def bench_claims(comp: Comparison) -> list[Claim]:
    """fp32 ONNX latency and each contender's best deployable variant, per target."""
    targets = sorted({r["target"] for r in comp.rows if r.get("target") != "host"})
    if not targets:
        return [Claim(comp.dataset, k, ARTICLES[k].claim, ARTICLES[k].article, None, "-", None,
                      "not benched (--no-bench)") for k in ("onnx_fp32_latency", "best_latency",
                                                            "best_size")]
    claims = []
    pairs = [p for p in _pairs(comp) if p[0] in comp.bench_seeds or not comp.bench_seeds]
    lstm, gru = [p[1] for p in pairs], [p[2] for p in pairs]
    for t in targets:
        lat = {n: [[v for r in _rows_for(comp, c, t, "onnx-fp32") for v in _trials(r["latency_ms"])]
                   for c in cs] for n, cs in (("lstm", lstm), ("gru", gru))}
        a = ARTICLES["onnx_fp32_latency"]
        if all(lat["lstm"]) and all(lat["gru"]) and lat["lstm"]:
            c = directional(comp.dataset, "onnx_fp32_latency", _latencies(lat["gru"]),
                            _latencies(lat["lstm"]), words=("faster", "slower"), fmt=_ms,
                            target=t, note="; per seed: the median of its timing trials")
            c.figure, _ = _figure(comp, "onnx_fp32_latency")
            if c.figure:
                c.measured_figure = f"GRU {c.measured_text}"
            claims.append(c)
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
            _latencies([p.get("trial_p50") or [p["latency_ms"]] for p in picks["gru"]]),
            _latencies([p.get("trial_p50") or [p["latency_ms"]] for p in picks["lstm"]]),
            words=("faster", "slower"), fmt=_ms, target=t, note=note))
        size = directional(
            comp.dataset, "best_size", [float(p["size_bytes"]) for p in picks["gru"]],
            [float(p["size_bytes"]) for p in picks["lstm"]], words=("smaller", "larger"),
            fmt=lambda v: f"{v / 1e3:.1f} kB", deterministic=True, target=t, note=note)
        size.measured_figure = (f"GRU {mean(size.values['gru']) / 1e6:.3g} MB vs LSTM "
                                f"{mean(size.values['lstm']) / 1e6:.3g} MB")
        claims.append(size)
    return claims


def build_claims(comp: Comparison) -> list[Claim]:
    """Every claim for one dataset, from the contenders of every seed and the bench rows."""
    pairs = _pairs(comp)
    if not pairs:
        return []
    lstm, gru = [p[1] for p in pairs], [p[2] for p in pairs]
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


def claims_table(comp: Comparison, claims: list[Claim], conditions: str = "") -> Table:
    """One line per claim, the article's figure beside the measured one; fits 120 columns
    (only the article, measured and detail cells wrap)."""
    seeds = ", ".join(map(str, comp.seeds))
    t = Table(title=f"{comp.dataset}: folk claims, GRU vs LSTM (seeds {seeds}; "
                    f"{comp.seq_len} steps, {comp.samples[0]} training / {comp.samples[1]} "
                    "held-out samples)",
              header_style="bold", title_justify="left", caption_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("claim", no_wrap=True, max_width=26)
    t.add_column("article", max_width=16)
    t.add_column("measured", max_width=22)
    t.add_column("verdict", no_wrap=True)
    t.add_column("detail", ratio=1, min_width=36)
    style = {True: "green", False: "red", None: "yellow"}
    for c in claims:
        label = SHORT[c.key] + (f" {c.target}" if c.target else "")
        article = c.article + (f"; {c.figure}" if c.figure else "")
        measured = c.measured_text + (f"; {c.measured_figure}" if c.measured_figure else "")
        t.add_row(label, article, measured, f"[{style[c.holds]}]{c.verdict}[/]", c.detail)
    t.caption = ("verdict: holds / does not hold when the whole 95% interval of the LSTM-GRU "
                 "difference (paired by seed; metrics also over the held-out samples) is on "
                 f"one side of the claim's threshold (an advantage above {MEANINGFUL:.0%} of the "
                 "other side; nearly equal: the margin); inconclusive when it straddles it"
                 + (f". Measured on {conditions}" if conditions else ""))
    return t


SHORT = {"parameters": "parameters", "epoch_time": "time per epoch",
         "epochs_to_level": "epochs to level", "final_gap": "final metric gap",
         "onnx_fp32_latency": "fp32 ONNX latency", "best_latency": "best variant latency",
         "best_size": "best variant size", "long_gap": "long-data error gap"}
