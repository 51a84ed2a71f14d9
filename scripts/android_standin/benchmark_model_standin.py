#!/usr/bin/env python3
"""STAND-IN for TensorFlow Lite's `benchmark_model` tool (NOT the real binary).

Runs a .tflite file with the REAL LiteRT interpreter (ai_edge_litert) on whatever CPU it runs
on (arm64 under qemu-user in edgernn's Android stand-in), and prints what the real tool prints,
in one of two real output forms:

- ``new`` (TFLite 2.13+ style): every line on stderr with ``INFO: ``/``WARNING: ``/``ERROR: ``
  prefixes, ``count=... p5=... median=... p95=...`` stats, the periodic peak-memory line
  (with ``--report_peak_memory_footprint=true``) and the "Memory status" block;
- ``old`` (TFLite 2.4-2.12 style): INFO/WARN lines on stdout, ERROR lines on stderr, no
  prefixes, ``count=... std=...`` without percentiles, no periodic peak-memory monitor
  (``--report_peak_memory_footprint`` is reported as an unconsumed flag, as an old build does).

Numbers are formatted as C++ ``std::ostream`` does (6 significant digits: 3.51239e+06).
Choose the form with ``--standin_output_form=old|new`` or ``EDGERNN_STANDIN_BENCHMARK_FORM``
(default ``new``).

Flags follow the real tool (``--graph --num_threads --num_runs --min_secs --max_secs
--warmup_runs --warmup_min_secs --run_delay --use_xnnpack --use_gpu --use_nnapi
--report_peak_memory_footprint --memory_footprint_check_interval_ms --enable_op_profiling
--input_layer_value_range``); unknown flags are reported as "Unconsumed cmdline flags" and
ignored, as the real tool does. ``--use_xnnpack=false`` runs without the default XNNPACK
delegate (BUILTIN_WITHOUT_DEFAULT_DELEGATES), ``true`` or unset keeps it.

The stand-in has no GPU and no NNAPI: ``--use_gpu=true`` / ``--use_nnapi=true`` fail the way the
real tool does when a delegate cannot be applied ("Failed to apply GPU delegate." then
"Benchmarking failed.", exit code 1).

Memory: "delta from the start" uses getrusage max RSS (of the whole process: under qemu-user
that includes the emulator); the periodic monitor samples VmRSS every N ms. Timings under
emulation say nothing about a phone.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time

FORM = "new"


def _g(x: float) -> str:
    """C++ ostream default formatting of a double (precision 6, %g)."""
    return f"{x:g}"


def log(severity: str, msg: str) -> None:
    if FORM == "new":
        prefix = {"INFO": "INFO: ", "WARN": "WARNING: ", "ERROR": "ERROR: "}[severity]
        sys.stderr.write(f"{prefix}{msg}\n")
        sys.stderr.flush()
    else:
        stream = sys.stderr if severity == "ERROR" else sys.stdout
        stream.write(msg + "\n")
        stream.flush()


FLAGS: dict[str, tuple[type, object]] = {
    "graph": (str, ""), "num_threads": (int, -1), "num_runs": (int, 50),
    "min_secs": (float, 1.0), "max_secs": (float, 150.0), "run_delay": (float, -1.0),
    "warmup_runs": (int, 1), "warmup_min_secs": (float, 0.5), "use_xnnpack": (bool, False),
    "use_gpu": (bool, False), "use_nnapi": (bool, False), "enable_op_profiling": (bool, False),
    "report_peak_memory_footprint": (bool, False),
    "memory_footprint_check_interval_ms": (int, 50), "input_layer_value_range": (str, ""),
    "input_layer": (str, ""), "input_layer_shape": (str, ""),
    "verbose": (bool, False), "help": (bool, False), "benchmark_name": (str, ""),
    "output_prefix": (str, ""),
}
OLD_FORM_UNKNOWN = {"report_peak_memory_footprint", "memory_footprint_check_interval_ms"}


def parse_flags(argv: list[str]) -> tuple[dict, set[str], list[str]]:
    values = {k: d for k, (_, d) in FLAGS.items()}
    given: set[str] = set()
    unconsumed: list[str] = []
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            unconsumed.append(arg)
            continue
        name, value = arg[2:].split("=", 1)
        if name == "standin_output_form":
            continue
        if name not in FLAGS or (FORM == "old" and name in OLD_FORM_UNKNOWN):
            unconsumed.append(arg)
            continue
        kind = FLAGS[name][0]
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                values[name] = value.lower() in ("true", "1")
            else:
                values[name] = kind(value)
        except ValueError:
            log("ERROR", f"Couldn't interpret value {value} for flag {name}.")
            raise SystemExit(_fail()) from None
        given.add(name)
    return values, given, unconsumed


def _fail() -> int:
    log("ERROR", "Benchmarking failed.")
    return 1


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return maxrss_mb()


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


class PeakMonitor:
    """Samples the resident set every ``interval_ms`` (like the real tool's monitor)."""

    def __init__(self, interval_ms: int):
        self.interval = max(interval_ms, 1) / 1000
        self.peak = rss_mb()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_mb())


class Stat:
    """tensorflow/lite/profiling Stat<int64_t>: integer microseconds, double average."""

    def __init__(self):
        self.values: list[int] = []

    def add(self, v: int) -> None:
        self.values.append(int(v))

    def avg(self) -> float:
        return sum(self.values) / len(self.values) if self.values else 0.0

    def line(self) -> str:
        v = self.values
        if not v:
            return "count=0"
        if min(v) == max(v):
            return f"count={len(v)} curr={v[-1]}" + ("(all same)" if len(v) > 1 else "")
        avg = self.avg()
        var = sum(x * x for x in v) / len(v) - avg * avg
        std = int(max(var, 0.0) ** 0.5)
        s = (f"count={len(v)} first={v[0]} curr={v[-1]} min={min(v)} max={max(v)} "
             f"avg={_g(avg)} std={std}")
        if FORM == "new":
            srt = sorted(v)

            def pct(p: float) -> int:
                return srt[min(len(srt) - 1, int(p / 100 * len(srt)))]

            s += f" p5={pct(5)} median={pct(50)} p95={pct(95)}"
        return s


def check_input_layers(interp, names: str, shapes: str) -> bool:
    """``--input_layer`` / ``--input_layer_shape`` checked against the model's inputs in order,
    with the real tool's messages."""
    details = interp.get_input_details()
    want = names.split(",")
    dims = shapes.split(":") if shapes else []
    if len(want) != len(details):
        log("ERROR", f"Inputs mismatch: Model inputs #:{len(details)} expected: {len(want)}")
        return False
    if dims and len(dims) != len(want):
        log("ERROR", "Invalid values for input_layer and input_layer_shape: the number of "
                     f"layers ({len(want)}) and shapes ({len(dims)}) differ")
        return False
    for i, (d, name) in enumerate(zip(details, want, strict=True)):
        if d["name"] != name:
            log("ERROR", f"Tensor # {i} is named {d['name']} but flags call it {name}")
            return False
        if dims and [int(v) for v in dims[i].split(",")] != [int(v) for v in d["shape"]]:
            log("ERROR", f"Input shape of {name} given as {dims[i]} differs from the model's "
                         f"{','.join(str(int(v)) for v in d['shape'])}")
            return False
    return True


def random_inputs(interp, value_range: str):
    import numpy as np

    rng = np.random.default_rng(0)
    out = []
    for d in interp.get_input_details():
        shape = [max(int(s), 1) for s in d["shape"]]
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            x = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif dtype.kind in "iu":
            lo, hi = 0, 10  # small ids: token inputs stay inside any embedding table
            if value_range:
                for part in value_range.split(":"):
                    name, _, rng_s = part.partition(",")
                    if name == d["name"] and "," in rng_s:
                        lo, hi = (int(t) for t in rng_s.split(","))
            if dtype.itemsize == 1:
                info = np.iinfo(dtype)
                lo, hi = info.min, info.max
            x = rng.integers(lo, hi, size=shape, endpoint=False).astype(dtype)
        elif dtype.kind == "b":
            x = rng.integers(0, 2, size=shape).astype(bool)
        else:
            x = np.zeros(shape, dtype)
        out.append((d["index"], x))
    return out


def run_loop(invoke, min_runs: int, min_secs: float, max_secs: float, run_delay: float,
             kind: str) -> Stat:
    log("INFO", f"Running benchmark for at least {min_runs} iterations and at least "
                f"{_g(min_secs)} seconds but terminate if exceeding {_g(max_secs)} seconds.")
    stat = Stat()
    now = time.perf_counter()
    min_finish, max_finish = now + min_secs, now + max_secs
    run = 0
    while (run < min_runs or now < min_finish) and now <= max_finish:
        t0 = time.perf_counter_ns()
        invoke()
        stat.add((time.perf_counter_ns() - t0) // 1000)
        if run_delay > 0:
            time.sleep(run_delay)
        now = time.perf_counter()
        run += 1
    # the real tool logs the stats stream followed by std::endl: an empty line follows
    log("INFO", stat.line() + "\n")
    return stat


def main(argv: list[str]) -> int:
    global FORM
    FORM = os.environ.get("EDGERNN_STANDIN_BENCHMARK_FORM", "new")
    for a in argv:
        if a.startswith("--standin_output_form="):
            FORM = a.split("=", 1)[1]
    if FORM not in ("old", "new"):
        print(f"benchmark_model stand-in: unknown output form {FORM!r} (old|new)", file=sys.stderr)
        return 2
    log("INFO", "STARTING!")
    p, given, unconsumed = parse_flags(argv)
    if p["help"]:
        log("ERROR", "usage: benchmark_model --graph=FILE [--num_threads=N] [--num_runs=N] ... "
                     "(stand-in: see scripts/android_standin/benchmark_model_standin.py)")
        return _fail()
    if FORM == "new":
        log("INFO", f"Log parameter values verbosely: [{int(p['verbose'])}]")
        labels = {"num_runs": "Min num runs", "min_secs": "Min runs duration (seconds)",
                  "max_secs": "Max runs duration (seconds)", "warmup_runs": "Min warmup runs",
                  "warmup_min_secs": "Min warmup runs duration (seconds)",
                  "num_threads": "Num threads", "graph": "Graph",
                  "enable_op_profiling": "Enable op profiling",
                  "report_peak_memory_footprint": "Report the peak memory footprint",
                  "memory_footprint_check_interval_ms": "Memory footprint check interval (ms)",
                  "use_gpu": "Use gpu", "use_nnapi": "Use NNAPI", "use_xnnpack": "Use xnnpack"}
        for name, label in labels.items():
            if name in given:
                v = p[name]
                log("INFO", f"{label}: [{int(v) if isinstance(v, bool) else v}]")
        if p["num_threads"] > 0:
            log("INFO", f"#threads used for CPU inference: [{p['num_threads']}]")
    else:
        for label, name in (("Min num runs", "num_runs"), ("Min runs duration (seconds)", "min_secs"),
                            ("Max runs duration (seconds)", "max_secs"),
                            ("Inter-run delay (seconds)", "run_delay"),
                            ("Num threads", "num_threads"), ("Min warmup runs", "warmup_runs"),
                            ("Min warmup runs duration (seconds)", "warmup_min_secs"),
                            ("Graph", "graph"), ("Use gpu", "use_gpu"), ("Use nnapi", "use_nnapi"),
                            ("Use xnnpack", "use_xnnpack"),
                            ("Enable op profiling", "enable_op_profiling")):
            v = p[name]
            shown = int(v) if isinstance(v, bool) else (_g(v) if isinstance(v, float) else v)
            log("INFO", f"{label}: [{shown}]")
    if unconsumed:
        log("WARN", f"Unconsumed cmdline flags: {' '.join(unconsumed)}")
    if not p["graph"]:
        log("ERROR", "Please specify the name of your TF Lite input file with --graph")
        return _fail()

    import numpy as np  # noqa: F401  (imported before the memory baseline, like a linked library)
    from ai_edge_litert import interpreter as litert

    start_maxrss = maxrss_mb()
    try:
        size = os.path.getsize(p["graph"])
        with open(p["graph"], "rb"):
            pass
    except OSError:
        log("ERROR", f"Could not open '{p['graph']}'.")
        log("ERROR", f"Failed to mmap model {p['graph']}")
        return _fail()
    log("INFO", f"Loaded model {p['graph']}")
    monitor = PeakMonitor(p["memory_footprint_check_interval_ms"]) \
        if p["report_peak_memory_footprint"] and FORM == "new" else None
    if monitor:
        monitor.__enter__()
    try:
        t0 = time.perf_counter_ns()
        threads = p["num_threads"] if p["num_threads"] > 0 else None
        resolver = (litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                    if "use_xnnpack" in given and not p["use_xnnpack"] else litert.OpResolverType.AUTO)
        try:
            interp = litert.Interpreter(model_path=p["graph"], num_threads=threads,
                                        experimental_op_resolver_type=resolver)
        except (ValueError, RuntimeError) as e:
            log("ERROR", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            log("ERROR", f"Failed to mmap model {p['graph']}")
            return _fail()
        if p["use_xnnpack"]:
            log("INFO", "XNNPACK delegate created.")
        # no GPU and no NNAPI on this stand-in: the real tool's wording when applying fails
        if p["use_gpu"]:
            log("ERROR", "Failed to apply GPU delegate.")
            return _fail()
        if p["use_nnapi"]:
            log("ERROR", "Failed to apply NNAPI delegate.")
            return _fail()
        if p["enable_op_profiling"]:
            log("WARN", "op profiling is not available in this stand-in; flag ignored")
        interp.allocate_tensors()
        init_us = (time.perf_counter_ns() - t0) // 1000
        init_maxrss = maxrss_mb()
        log("INFO", f"The input model file size (MB): {_g(size / 1e6)}")
        log("INFO", f"Initialized session in {_g(init_us / 1000)}ms.")
        if p["input_layer"] and not check_input_layers(interp, p["input_layer"],
                                                       p["input_layer_shape"]):
            return _fail()
        inputs = random_inputs(interp, p["input_layer_value_range"])

        def invoke() -> None:
            for index, x in inputs:
                interp.set_tensor(index, x)
            interp.invoke()

        try:
            warm = run_loop(invoke, p["warmup_runs"], p["warmup_min_secs"], p["max_secs"],
                            p["run_delay"], "warmup")
            timed = run_loop(invoke, p["num_runs"], p["min_secs"], p["max_secs"], p["run_delay"],
                             "regular")
        except (ValueError, RuntimeError) as e:
            log("ERROR", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            log("ERROR", "Failed to invoke!")
            return _fail()
    finally:
        if monitor:
            monitor.__exit__(None, None, None)
    first = warm.values[0] if warm.values else (timed.values[0] if timed.values else 0)
    log("INFO", f"Inference timings in us: Init: {init_us}, First inference: {first}, "
                f"Warmup (avg): {_g(warm.avg())}, Inference (avg): {_g(timed.avg())}")
    log("INFO", "Note: as the benchmark tool itself affects memory footprint, the following is "
                "only APPROXIMATE to the actual memory footprint of the model at runtime. Take "
                "the information at your discretion.")
    end_maxrss = maxrss_mb()
    log("INFO", f"Memory footprint delta from the start of the tool (MB): "
                f"init={_g(init_maxrss - start_maxrss)} overall={_g(end_maxrss - start_maxrss)}")
    if monitor:
        log("INFO", f"Overall peak memory footprint (MB) via periodic monitoring: {_g(monitor.peak)}")
        log("INFO", "Memory status at the end of exeution:")
        log("INFO", f"- VmRSS              : {rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
