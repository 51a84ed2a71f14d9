"""Sweep on a local Ray cluster vs sequential ``edgernn bench``, wall time in ONE run.

Work: two users' models built here with plain torch (a scripted Conv1d+LSTM and a traced GRU,
hidden 16, seq 10, 4 features), every variant of the formats asked (default onnx + tflite,
quantizations dynamic, fp16, int8), on this host (``x86``) and on the emulated Pi (STAND-IN for
a board: qemu-user behind sshd; ``scripts/emulated_pi.sh``) with 1 timing trial of 20 runs.

* sequential: ``edgernn bench A B --target x86`` then ``--target <pi>`` (one Pi, one process,
  what one user with one laptop does today); fresh store and working directories;
* sweep: ``edgernn sweep`` with the same models, targets x86 and a GROUP of two "Pis" (the
  same emulated root behind two sshd ports), Ray started here with ``--cpus`` CPUs; fresh
  store and artifact directory.

Reported: wall seconds of each, the ratio, the wall seconds of both commands run again once
everything is stored (what a resume with nothing left costs), and from the first sweep's
``sweep.json`` the busy seconds per lane (conversion tasks, each device), from which the
README projects to N CPUs and D boards on paper.
This machine has 2 cores; everything (conversions, x86 measurements, the emulated Pi's qemu)
shares them, so the measured speed-up is a floor for a real lab, not a forecast.

Usage: python benchmarks/sweep_speedup.py [--formats onnx,tflite --cpus 2 --out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.user_models import ConvFrontLSTM, GRUClassifier  # noqa: E402

BENCH = {"runs": 20, "min_seconds": 0.05, "warmup": 2, "trials": 1, "threads": 1}
SHAPE = ["--input-shape", "batch=1,seq=10,4", "--task", "classify"]


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="onnx,tflite")
    ap.add_argument("--quantize", default="dynamic,fp16,int8")
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args()
    pi = subprocess.run([str(REPO / "scripts" / "emulated_pi.sh"), "start", "--port", "22022",
                         "--port", "22023"], capture_output=True, text=True)
    if pi.returncode != 0:
        raise SystemExit(f"emulated Pi unavailable: {pi.stderr[-500:]}")
    pi_spec = yaml.safe_load(Path("/var/tmp/edgernn-pi/state/rpi-emulated.yaml").read_text())
    d = Path(tempfile.mkdtemp(prefix="edgernn-sweep-bench-"))
    torch.manual_seed(0)
    torch.jit.script(ConvFrontLSTM(features=4, channels=8, hidden=16, classes=3)).save(
        str(d / "conv_lstm.pt"))
    torch.jit.trace(GRUClassifier(features=4, hidden=16, classes=3).eval(),
                    torch.zeros(1, 10, 4)).save(str(d / "gru_cls.pt"))
    rng = np.random.default_rng(0)
    np.savez(d / "eval.npz", x=rng.normal(size=(24, 10, 4)).astype(np.float32),
             y=rng.integers(0, 3, size=24))
    tdir = d / "targets"
    tdir.mkdir()
    group = {k: v for k, v in pi_spec.items() if k not in ("port", "aliases")}
    group.update(name="pi-lab", devices=[{"id": "pi-a", "port": 22022},
                                         {"id": "pi-b", "port": 22023}])
    (tdir / "pi-lab.yaml").write_text(yaml.safe_dump(group))
    formats, modes = a.formats.split(","), a.quantize.split(",")
    shape = {"input_shape": "batch=1,seq=10,4", "task": "classify"}
    (d / "sweep.yaml").write_text(yaml.safe_dump({
        "models": [{"path": "conv_lstm.pt", **shape}, {"path": "gru_cls.pt", **shape}],
        "data": "eval.npz", "targets": ["x86", "pi-lab"], "formats": formats,
        "quantize": modes, "bench": BENCH, "artifacts": "artifacts"}))
    env = {**os.environ, "EDGERNN_TARGETS": str(tdir)}
    edgernn = [sys.executable, "-m", "edgernn.cli"]
    timing = ["--runs", "20", "--min-seconds", "0.05", "--warmup", "2", "--trials", "1",
              "--threads", "1", "--format", a.formats, "--quantize", a.quantize, *SHAPE]
    models = [str(d / "conv_lstm.pt"), str(d / "gru_cls.pt")]

    def sequential() -> float:
        took = 0.0
        for target in ("x86", "/var/tmp/edgernn-pi/state/rpi-emulated.yaml"):
            took += run([*edgernn, "bench", *models, "--data", str(d / "eval.npz"), "--target",
                         target, "--out", str(d / f"seq-{Path(target).stem}"), "--db",
                         str(d / "seq.db"), *timing], env)
        return took

    def swept() -> float:
        return run([*edgernn, "sweep", str(d / "sweep.yaml"), "--db", str(d / "sweep.db"),
                    "--cpus", str(a.cpus)], env)

    seq, sweep = sequential(), swept()
    lanes = json.loads((d / "artifacts" / "sweep.json").read_text())["lanes"]
    # the same commands again: every row is stored (a resumed sweep that has nothing left)
    seq_again, sweep_again = sequential(), swept()
    busy = {k: v["busy_s"] for k, v in lanes.items()}  # task wall seconds per lane
    result = {"meta": {"machine": platform.node(), "cpus": os.cpu_count(), "ray_cpus": a.cpus,
                       "formats": formats, "quantize": modes, "bench": BENCH,
                       "pi": "emulated arm64 root under qemu-user (STAND-IN), two sshd ports"},
              "sequential_s": round(seq, 1), "sweep_s": round(sweep, 1),
              "speedup": round(seq / sweep, 2), "lane_busy_s": busy,
              "again_sequential_s": round(seq_again, 1), "again_sweep_s": round(sweep_again, 1)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "sweep_speedup.json").write_text(json.dumps(result, indent=2))
    print(f"sequential bench (x86 then one Pi): {seq:7.1f} s")
    print(f"sweep on Ray ({a.cpus} CPUs, x86 + 2 Pis): {sweep:7.1f} s   speed-up {seq / sweep:.2f}x")
    for k, v in sorted(busy.items()):
        print(f"  busy {k:<14} {v:6.1f} s")
    print(f"again, everything stored: sequential {seq_again:.1f} s, sweep {sweep_again:.1f} s")


if __name__ == "__main__":
    main()
