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

import numpy as np

from . import metrics, runtimes, timing


def device_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "machine": platform.machine(), "system": platform.system(),
        "python": platform.python_version(), "numpy": np.__version__,
        "cpu_count": os.cpu_count(), "hostname": platform.node(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":")[0].strip().lower()
                if key in ("model name", "hardware", "cpu part", "processor") and ":" in line:
                    val = line.split(":", 1)[1].strip()
                    if key == "model name" or (key == "hardware" and "cpu_model" not in facts):
                        facts["cpu_model"] = val
                        break
    except OSError:
        pass
    return facts


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    threads = int(job.get("threads", 1))
    runtimes.pin_threads(threads)
    if job.get("cpus") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(job["cpus"]))
    data = np.load(job["data"], allow_pickle=False)
    x, y = data["x"], data["y"]
    ref = data["reference"] if "reference" in data.files else None
    batch_axis = int(job.get("batch_axis", 0))
    task = job["task"]
    result: dict[str, Any] = {"device": device_facts(), "threads": threads}

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
    sample = layout(x[:1])
    t0 = time.perf_counter()
    sess.run(sample)
    result["first_ms"] = (time.perf_counter() - t0) * 1e3
    samples = timing.time_calls(
        lambda: sess.run(sample), warmup=int(job.get("warmup", 20)),
        min_runs=int(job.get("min_runs", 100)), max_runs=int(job.get("max_runs", 3000)),
        min_seconds=float(job.get("min_seconds", 1.0)),
    )
    result["latency_ms"] = timing.summarize(samples)
    result["peak_rss_mb"] = timing.peak_mb()
    result["baseline_rss_mb"] = base_rss
    if peak_reset and base_rss is not None and result["peak_rss_mb"] is not None:
        result["peak_delta_mb"] = result["peak_rss_mb"] - base_rss
    # evaluation: outputs on every sample, metrics and parity computed here, on this device
    t0 = time.perf_counter()
    step = int(job.get("eval_batch", 1)) if sess.dynamic_batch else 1
    outs = [sess.run(layout(x[i : i + step])) for i in range(0, len(x), step)]
    out = np.concatenate([o.reshape(len(o), -1) if o.ndim else o.reshape(1, 1) for o in outs])
    result["eval_seconds"] = time.perf_counter() - t0
    result["eval_samples"] = int(len(x))
    result["metrics"] = metrics.compute_metrics(out, y, task)
    if ref is not None:
        result["parity_max_abs_diff"] = float(np.max(np.abs(out - ref.reshape(out.shape))))
        result["agreement"] = metrics.agreement(out, ref, task, y)
    if job.get("save_outputs"):
        np.save(job["save_outputs"], out)
    return result


def main(argv: list[str]) -> int:
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
