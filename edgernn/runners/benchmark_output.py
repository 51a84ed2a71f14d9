"""Parse the output of TensorFlow Lite's ``benchmark_model`` (pure functions, no I/O).

Forms understood (values may be in scientific notation, e.g. ``3.51239e+06``; lines may carry
a ``INFO:``/``WARNING:``/``ERROR:`` prefix, as newer builds print everything through their
logger on stderr, while older builds print bare lines on stdout)::

    The input model file size (MB): 2.2
    Initialized session in 12.3ms.
    Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate ...
    count=50 first=10234 curr=9876 min=9800 max=10500 avg=9950 std=120            (warm-up)
    Running benchmark for at least 50 iterations and at least 1 seconds but terminate ...
    count=50 first=10234 curr=9876 min=9800 max=10500 avg=9950 std=120 [p5=.. median=.. p95=..]
    count=50 curr=9876(all same)                                      (every run identical)
    Inference timings in us: Init: 12300, First inference: 10234, Warmup (avg): 10100, Inference (avg): 9950
    Average inference timings in us: Warmup: 83235, Init: 38467, no stats: 79760.9  (TF 1.x)
    Memory footprint delta from the start of the tool (MB): init=3.1 overall=5.2
    Peak memory footprint (MB): init=3.1 overall=5.2                           (older wording)
    Overall peak memory footprint (MB) via periodic monitoring: 7.4

The tool prints one ``count=`` line per phase: warm-up first, then the timed runs. The timed
statistics are the LAST standalone ``count=`` line before the "Inference timings" line; the
op-profiling tables that ``--enable_op_profiling`` prints afterwards (``Timings
(microseconds): count=...``, ``Memory (bytes): count=...``) are not run statistics. Times are
microseconds in the tool's output and milliseconds in the result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
PREFIX = re.compile(r"^\s*(?:(?:INFO|WARNING|WARN|ERROR|VERBOSE|FATAL)\s*:\s*)?")
RE_SIZE = re.compile(rf"The input model file size \(MB\):\s*({NUM})", re.I)
RE_INIT = re.compile(rf"Initialized session in\s*({NUM})\s*ms", re.I)
RE_RUNNING = re.compile(r"Running benchmark for at least\s+(\d+)\s+iterations")
RE_TIMINGS = re.compile(
    rf"Inference timings in us:\s*Init:\s*({NUM}),\s*First inference:\s*({NUM}),\s*"
    rf"Warmup \(avg\):\s*({NUM}),\s*Inference \(avg\):\s*({NUM})", re.I)
RE_TIMINGS_OLD = re.compile(
    rf"Average inference timings in us:\s*Warmup:\s*({NUM}),\s*Init:\s*({NUM}),\s*"
    rf"(?:no stats|Inference):\s*({NUM})", re.I)
RE_MEM_DELTA = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):\s*"
    rf"init=({NUM})\s+overall=({NUM})", re.I)
RE_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*({NUM})",
                         re.I)
RE_KV = re.compile(rf"(\w+)=({NUM})")
RE_ALL_SAME = re.compile(rf"^count=(\d+)\s+curr=({NUM})\s*(\(all same\))?\s*$")
RE_DELEGATE = re.compile(
    r"(Explicitly applied \w+ delegate.*|\w+ delegate created\.|Created TensorFlow Lite (?:\w+ )?"
    r"delegate for \w+\.|Applied \w+ delegate.*|Though \w+ delegate is explicitly applied.*)")
RE_FAILURE = re.compile(
    r"(Failed to apply \w+ delegate\.?|Failed to (?:mmap|load|invoke|allocate)[^\n]*|"
    r"Benchmarking failed\.?|\w+ acceleration is unsupported on this platform\.?)", re.I)
RE_UNCONSUMED = re.compile(r"Unconsumed cmdline flags:\s*(.*)")


class BenchmarkOutputError(ValueError):
    """The output lacks a required line or a line is garbled; the message is one line."""


@dataclass
class RunStats:
    """One ``count=`` line, in microseconds (percentiles only where the build prints them)."""

    count: int
    avg: float
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None
    all_same: bool = False
    phase: str = "timed"  # "warmup" or "timed"
    line: str = ""


@dataclass
class BenchmarkOutput:
    timed: RunStats
    warmup: RunStats | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    model_size_mb: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    delegate_lines: list[str] = field(default_factory=list)
    unconsumed_flags: str | None = None
    notes: list[str] = field(default_factory=list)

    def latency_note(self) -> str:
        t = self.timed
        if t.all_same:
            return (f"all {t.count} timed runs took the same time (benchmark_model prints "
                    "'(all same)'): p50 = that time")
        if t.median is not None:
            return (f"p50 = benchmark_model's median of {t.count} timed runs (p5/p95 also "
                    "printed); p90, p99 and IQR are not printed by benchmark_model")
        return (f"p50 = MEAN (avg=) of {t.count} timed runs: this benchmark_model build prints no "
                "median; p90, p99 and IQR are not printed")

    def latency_ms(self) -> dict[str, Any]:
        t = self.timed
        ms = _ms
        p50 = t.median if t.median is not None else t.avg
        lat: dict[str, Any] = {
            "p50": ms(p50), "p90": None, "p99": None, "mean": ms(t.avg),
            "std": ms(t.std) if t.std is not None else (0.0 if t.all_same else None),
            "min": ms(t.min), "max": ms(t.max), "iqr": None, "count": t.count,
            "p50_source": "median" if t.median is not None and not t.all_same else
            ("all same" if t.all_same else "mean"),
        }
        if t.p5 is not None:
            lat["p5"] = ms(t.p5)
        if t.p95 is not None:
            lat["p95"] = ms(t.p95)
        return lat

    def to_result(self) -> dict[str, Any]:
        """The timing/memory part of a probe-style result dict (milliseconds, MB)."""
        res: dict[str, Any] = {
            "load_ms": self.init_ms, "first_ms": self.first_ms, "latency_ms": self.latency_ms(),
            "latency_note": self.latency_note(),
            "benchmark": {
                "model_size_mb": self.model_size_mb, "init_ms": self.init_ms,
                "first_ms": self.first_ms, "warmup_avg_ms": self.warmup_avg_ms,
                "inference_avg_ms": self.inference_avg_ms,
                "warmup": _stats_ms(self.warmup), "timed": _stats_ms(self.timed),
                "memory_init_delta_mb": self.memory_init_mb,
                "memory_overall_delta_mb": self.memory_overall_mb,
                "peak_memory_mb": self.peak_memory_mb, "delegate_lines": self.delegate_lines,
                "unconsumed_flags": self.unconsumed_flags,
            },
        }
        if self.peak_memory_mb is not None:
            res["peak_rss_mb"] = self.peak_memory_mb
        if self.memory_overall_mb is not None:
            res["peak_delta_mb"] = self.memory_overall_mb
        return res


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0


def _stats_ms(s: RunStats | None) -> dict[str, Any] | None:
    if s is None:
        return None
    out: dict[str, Any] = {"count": s.count, "phase": s.phase, "all_same": s.all_same}
    for k in ("first", "curr", "min", "max", "avg", "std", "p5", "median", "p95"):
        v = getattr(s, k)
        if v is not None:
            out[k + "_ms"] = v / 1000.0
    return out


def _num(s: str) -> float:
    return float(s)


def _strip(line: str) -> str:
    return PREFIX.sub("", line, count=1).strip()


def _parse_count(body: str) -> RunStats:
    m = RE_ALL_SAME.match(body)
    if m:
        v = _num(m.group(2))
        return RunStats(count=int(m.group(1)), avg=v, first=v, curr=v, min=v, max=v, std=0.0,
                        all_same=True, line=body)
    kv = {k: _num(v) for k, v in RE_KV.findall(body)}
    need = ("count", "avg")
    missing = [k for k in need if k not in kv]
    if missing:
        raise BenchmarkOutputError(f"garbled statistics line (no {', '.join(missing)}=): {body[:160]}")
    if kv["count"] != int(kv["count"]) or kv["count"] < 1:
        raise BenchmarkOutputError(f"garbled statistics line (count): {body[:160]}")
    if not math.isfinite(kv["avg"]):
        raise BenchmarkOutputError(f"garbled statistics line (avg={kv['avg']}): {body[:160]}")
    return RunStats(count=int(kv["count"]), avg=kv["avg"], first=kv.get("first"),
                    curr=kv.get("curr"), min=kv.get("min"), max=kv.get("max"), std=kv.get("std"),
                    p5=kv.get("p5"), median=kv.get("median"), p95=kv.get("p95"), line=body)


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse ``benchmark_model`` output (stdout and stderr together); raise
    BenchmarkOutputError naming the missing or garbled line."""
    counts: list[RunStats] = []
    found: dict[str, Any] = {}
    delegate_lines: list[str] = []
    unconsumed = None
    headers = 0
    timings_seen = False
    for raw in text.splitlines():
        body = _strip(raw)
        if not body:
            continue
        if body.startswith("count="):
            if not timings_seen:  # op-profiling tables after the summary are not run stats
                counts.append(_parse_count(body))
            continue
        if RE_RUNNING.search(body):
            headers += 1
            continue
        m = RE_INIT.search(body)
        if m and "init_ms" not in found:
            found["init_ms"] = _num(m.group(1))
            continue
        m = RE_TIMINGS.search(body)
        if m:
            timings_seen = True
            found["timings"] = tuple(_num(g) for g in m.groups())
            continue
        m = RE_TIMINGS_OLD.search(body)
        if m:
            timings_seen = True
            warm, init, inf = (_num(g) for g in m.groups())
            found["timings"] = (init, None, warm, inf)
            continue
        m = RE_SIZE.search(body)
        if m:
            found["size"] = _num(m.group(1))
            continue
        m = RE_MEM_DELTA.search(body)
        if m:
            found["mem"] = (_num(m.group(1)), _num(m.group(2)))
            continue
        m = RE_MEM_PEAK.search(body)
        if m:
            found["peak"] = _num(m.group(1))
            continue
        m = RE_UNCONSUMED.search(body)
        if m:
            unconsumed = m.group(1).strip()
            continue
        m = RE_DELEGATE.search(body)
        if m and m.group(1) not in delegate_lines:
            delegate_lines.append(m.group(1))

    if not counts:
        raise BenchmarkOutputError(
            "benchmark_model output lacks the timed-run statistics line "
            "('count=... first=... curr=... min=... max=... avg=... std=...')")
    if len(counts) == 1 and not timings_seen:
        raise BenchmarkOutputError(
            "benchmark_model output has only one 'count=' line (the warm-up) and no 'Inference "
            "timings in us:' line: the timed runs did not finish")
    notes: list[str] = []
    timed = counts[-1]
    warmup = counts[-2] if len(counts) >= 2 else None
    if warmup is not None:
        warmup.phase = "warmup"
    elif headers < 2:
        notes.append("benchmark_model printed one 'count=' line only: it is taken as the timed runs")
    init_ms = found.get("init_ms")
    timings = found.get("timings")
    first_ms = warm_avg = inf_avg = None
    if timings is not None:
        init_us, first_us, warm_us, inf_us = timings
        if init_ms is None:
            init_ms = init_us / 1000.0
        first_ms = None if first_us is None else first_us / 1000.0
        warm_avg = None if warm_us is None else warm_us / 1000.0
        inf_avg = None if inf_us is None else inf_us / 1000.0
    if init_ms is None:
        raise BenchmarkOutputError(
            "benchmark_model output lacks the 'Initialized session in ...ms.' line (and the "
            "'Inference timings in us: Init: ...' line)")
    if first_ms is None and warmup is not None:
        first_ms = (warmup.first if warmup.first is not None else warmup.curr) / 1000.0
    if first_ms is None:
        notes.append("no first-inference time printed (no 'First inference:' and no warm-up "
                     "'count=' line)")
    mem = found.get("mem")
    return BenchmarkOutput(
        timed=timed, warmup=warmup, init_ms=init_ms, first_ms=first_ms, warmup_avg_ms=warm_avg,
        inference_avg_ms=inf_avg, model_size_mb=found.get("size"),
        memory_init_mb=mem[0] if mem else None, memory_overall_mb=mem[1] if mem else None,
        peak_memory_mb=found.get("peak"), delegate_lines=delegate_lines,
        unconsumed_flags=unconsumed, notes=notes)


def failure_reason(text: str) -> str | None:
    """The tool's own reason line for a failed run: a "Failed to apply X delegate." line first,
    then the first other ERROR line, then "Benchmarking failed."; None if nothing matches."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    for x in lines:
        m = re.search(r"Failed to apply \w+ delegate\.?", x)
        if m:
            return m.group(0)
    errors = []
    for x in lines:
        if re.match(r"^\s*(?:ERROR|FATAL)\s*:", x) or RE_FAILURE.search(x):
            body = _strip(x)
            if body and not body.lower().startswith("benchmarking failed"):
                errors.append(body)
    if errors:
        return errors[0]
    for x in lines:
        if "Benchmarking failed" in x:
            return _strip(x)
    return None
