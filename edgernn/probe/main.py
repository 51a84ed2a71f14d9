"""Probe entry point: ``python -m edgernn.probe JOB.json RESULT.json``.

Measures one variant: load time, first inference, latency distribution, peak memory, then
runs the evaluation data and computes metrics, parity and agreement on this machine.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from typing import Any

# stdlib only at import time: ``--facts`` must work on a device that lacks numpy
from .versions import version_of

ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd4d": "Cortex-A715"}


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _run(cmd: list[str]) -> str | None:
    import subprocess

    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def device_facts() -> dict[str, Any]:
    """What this machine is: CPU model, cores, memory, OS, python, numpy."""
    facts: dict[str, Any] = {
        "machine": platform.machine(), "system": platform.system(),
        "python": platform.python_version(), "numpy": version_of("numpy"),
        "cpu_count": os.cpu_count(), "hostname": platform.node(),
    }
    info = _read("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in info.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip().lower(), v.strip())
    if "model name" in fields:
        facts["cpu_model"] = fields["model name"]
    elif "cpu part" in fields:
        facts["cpu_model"] = ARM_PARTS.get(fields["cpu part"].lower(), f"ARM part {fields['cpu part']}")
    if "model" in fields and not fields["model"].isdigit():
        facts["board"] = fields["model"]  # e.g. "Raspberry Pi 4 Model B Rev 1.4"
    board = _read("/proc/device-tree/model")
    if board:
        facts["board"] = board.rstrip("\x00")
    mem = _read("/proc/meminfo") or ""
    for line in mem.splitlines():
        if line.startswith("MemTotal:"):
            facts["memory_mb"] = round(int(line.split()[1]) / 1024)
    osr = _read("/etc/os-release") or ""
    for line in osr.splitlines():
        if line.startswith("PRETTY_NAME="):
            facts["os"] = line.split("=", 1)[1].strip('"')
    return facts


def thermal_state() -> dict[str, Any]:
    """CPU governor, temperature and (on a Pi) the firmware's throttling flags."""
    state: dict[str, Any] = {
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")}
    temp = _run(["vcgencmd", "measure_temp"])
    if temp and "=" in temp:
        state["temp_c"] = float(temp.split("=")[1].split("'")[0])
    else:
        raw = _read("/sys/class/thermal/thermal_zone0/temp")
        if raw and raw.lstrip("-").isdigit():
            state["temp_c"] = int(raw) / 1000
    thr = _run(["vcgencmd", "get_throttled"])
    if thr and "=" in thr:
        state["throttled"] = thr.split("=")[1]
    return state


def throttled_during(before: dict[str, Any], after: dict[str, Any]) -> bool | None:
    """True when the Pi firmware reports throttling now, or a new sticky throttle flag."""
    if "throttled" not in after:
        return None
    b = int(before.get("throttled", "0x0"), 16)
    a = int(after["throttled"], 16)
    return bool(a & 0xF) or bool((a & ~b) & 0xF0000)


def runtime_versions(host: bool = False) -> dict[str, str | None]:
    """Versions of numpy and of the registered runtimes' packages (None: not installed); those
    of host-only runtimes (torch) too when ``host``."""
    from .runtimes import reported_packages  # stdlib only at import, as this module

    return {m: version_of(m) for m in reported_packages(host)}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    try:
        import numpy as np
    except ImportError:
        raise RuntimeError("numpy is not installed here; install it with: pip install numpy") from None

    from . import metrics, runtimes, stepping, timing

    threads = int(job.get("threads", 1))
    runtimes.pin_threads(threads)
    if job.get("cpus") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(job["cpus"]))
    data = np.load(job["data"], allow_pickle=False)
    x, y = data["x"], data["y"]
    ref = data["reference"] if "reference" in data.files else None
    batch_axis = int(job.get("batch_axis", 0))
    task = job["task"]
    result: dict[str, Any] = {"device": device_facts(), "threads": threads,
                              "thermal_before": thermal_state()}

    def layout(a: np.ndarray) -> np.ndarray:
        return a if batch_axis == 0 else np.moveaxis(a, 0, batch_axis)

    # import the runtime before the memory baseline, so the delta is the model's own
    runtimes.preimport(job["runtime"])
    base_rss = timing.rss_mb()
    peak_reset = timing.reset_peak()
    t0 = time.perf_counter()
    sess = runtimes.load(job["runtime"], job["path"], threads, **job.get("options", {}))
    result["load_ms"] = (time.perf_counter() - t0) * 1e3
    result["runtime"], result["runtime_version"] = sess.runtime, sess.version
    plan = job.get("plan")
    stepper = stepping.Stepper(sess.outputs, plan) if plan and plan.get("feed") else None
    if stepper is not None:  # a step model: one timed call = one step with the state fed back
        steps = [stepper.layout(v) for v in x[0]]
        pos = [0]

        def call() -> None:
            if pos[0] % len(steps) == 0:
                stepper.reset()  # a new stream at the end of the sample's steps
            stepper.step([steps[pos[0] % len(steps)]])
            pos[0] += 1
    else:
        sample = layout(x[:1])

        def call() -> None:
            sess.run(sample)
    t0 = time.perf_counter()
    call()
    result["first_ms"] = (time.perf_counter() - t0) * 1e3
    samples = timing.time_calls(
        call, warmup=int(job.get("warmup", 20)),
        min_runs=int(job.get("min_runs", 100)), max_runs=int(job.get("max_runs", 1_000_000)),
        min_seconds=float(job.get("min_seconds", 1.0)),
    )
    result["latency_ms"] = timing.summarize(samples)
    result["thermal_after"] = thermal_state()
    result["throttled"] = throttled_during(result["thermal_before"], result["thermal_after"])
    result["peak_rss_mb"] = timing.peak_mb()
    result["baseline_rss_mb"] = base_rss
    if peak_reset and base_rss is not None and result["peak_rss_mb"] is not None:
        result["peak_delta_mb"] = result["peak_rss_mb"] - base_rss
    if not job.get("evaluate", True):  # a further timing trial: the first one evaluated
        return result
    # evaluation: outputs on every sample, metrics and parity computed here, on this device
    t0 = time.perf_counter()
    if stepper is not None:  # every sample's steps from a fresh (or its given) state
        inits = {k[5:]: data[k] for k in data.files if k.startswith("init_")}
        out = np.stack([np.stack([o.reshape(-1) for o in stepper.run(
            x[i], {n: v[i] for n, v in inits.items()})]) for i in range(len(x))])
    else:
        step = int(job.get("eval_batch", 1)) if sess.dynamic_batch else 1
        k = int(job.get("output", 0))  # the output ``y`` judges (by index, in the model's order)
        run = sess.run if k == 0 else (lambda a: sess.outputs(a)[k])
        outs = [run(layout(x[i : i + step])) for i in range(0, len(x), step)]
        out = np.concatenate([o.reshape(len(o), -1) if o.ndim else o.reshape(1, 1) for o in outs])
    result["eval_seconds"] = time.perf_counter() - t0
    result["eval_samples"] = int(len(x))
    if out.dtype.kind in "fc":  # NaN/Inf outputs: the row fails, whatever argmax makes of them
        result["nonfinite_outputs"] = int(out.size - np.count_nonzero(np.isfinite(out)))
    judged = judged_outputs(out, y, task, stepper is not None)
    threshold = float(job.get("threshold", 0.0))
    labels = y.reshape(-1) if y.ndim == 2 and task == "classify" else y
    result["metrics"] = metrics.compute_metrics(judged, labels, task, threshold)
    # per-sample correctness / errors: paired significance tests between rows (select)
    result["per_sample"] = metrics.per_sample_record(judged, labels, task, threshold)
    if ref is not None:
        result["parity_max_abs_diff"] = float(np.max(np.abs(out - ref.reshape(out.shape))))
        result["agreement"] = metrics.agreement(
            judged, judged_outputs(ref.reshape(out.shape), y, task, stepper is not None),
            task, y, threshold)
        if task != "classify":
            result["agreement_tol"] = metrics.agreement_tolerance(y)
    if job.get("return_outputs"):  # the host's metric function judges them (never run here)
        result["outputs"] = metrics.pack_array(
            metrics.shaped_like_targets(judged, y, task),
            float(job.get("return_limit_mb", metrics.RETURN_LIMIT_MB)))
    if job.get("save_outputs"):
        np.save(job["save_outputs"], out)
    return result


def judged_outputs(out, y, task: str, streamed: bool):
    """The outputs ``y`` judges. Whole sequence (``out`` [N, K]): as they are, or one row per
    step with a label per step (``y`` [N, T], classification). Stream (``out`` [N, T, K]):
    every step's output when ``y`` has one target per step (labels [N, T], or values
    [N, T, *out] with as many values per sample as the T outputs hold), else the last step's."""
    if task == "classify" and y.ndim == 2:  # a label per step
        return out.reshape(y.shape[0] * y.shape[1], -1)
    if not streamed:
        return out
    per_sample = int(y[0].size)  # values per sample (numpy is not imported at module level)
    if task != "classify" and out.shape[1] > 1 and per_sample == out.shape[1] * out.shape[2]:
        return out.reshape(len(out), -1)  # every step judged, per element
    return out[:, -1]


def main(argv: list[str]) -> int:
    if argv == ["--facts"]:
        print(json.dumps({**device_facts(), "runtimes": runtime_versions(),
                          "thermal": thermal_state()}))
        return 0
    if len(argv) != 2:
        print("usage: python -m edgernn.probe JOB.json RESULT.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        job = json.load(f)
    try:
        result = run_job(job)
        result["ok"] = True
    except Exception as e:  # the runner turns this into a failed row with the reason
        result = {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0][:500],
                  "traceback": traceback.format_exc()[-4000:]}
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 0 if result["ok"] else 1
