"""A streaming speech enhancer of our own through every format, whole-sequence and step (issue 26).

The model is the class that runs most on phones: log-power frames (161 bins, 20 ms at 16 kHz)
in, a gain mask per frame out, two GRU layers between dense layers; its step form takes one
frame and the state [2, 1, H] and returns the mask and the new state (same weights). It is
trained here on espeak-ng speech mixed with noise at -5..15 dB (``edgernn.data.enhance``: the
speakers of the test set are held out), to the ideal ratio mask. Then plain ``edgernn bench``
of each form with ``--metric-fn snr_gain`` (the SNR improvement of mask x noisy over noisy
against clean, dB), x86 target, 1 thread: size, p50 (per call: per step for the step form),
SNR gain and its drop from fp32 for every variant, and the ratios issue 26 asks for, all from
one bench run per form:

- step form: best TFLite variant / best ONNX variant, per step;
- whole form: best TFLite variant / onnx-int8-scan, per sequence.

A variant counts as "best" among those whose SNR gain is within 0.5 dB of fp32's.

    python benchmarks/streaming_enhancer.py            # ~10 min on 2 cores
    python benchmarks/streaming_enhancer.py --quick    # small model and data, no training

Writes ``benchmarks/results/streaming_enhancer.json``. x86 host only (the emulated Pi and the
Android stand-in time emulation or this host, not devices: see the runner tests).
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
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgernn.data.enhance import enhancement_pairs  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "streaming_enhancer.json"
WITHIN_DB = 0.5  # a variant is a candidate when its SNR gain is within this of fp32's


class Enhancer(nn.Module):
    """x [B, T, F] log-power -> mask [B, T, F]."""

    def __init__(self, bins: int, hidden: int):
        super().__init__()
        self.inp = nn.Linear(bins, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(hidden, bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.gru(torch.relu(self.inp(x)))[0]))


class StepEnhancer(nn.Module):
    """The same weights one frame at a time: x [B, F], h [2, B, H] -> mask [B, F], h'."""

    def __init__(self, whole: Enhancer):
        super().__init__()
        self.inp, self.gru, self.out = whole.inp, whole.gru, whole.out

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h2 = self.gru(torch.relu(self.inp(x)).unsqueeze(1), h)
        return torch.sigmoid(self.out(y[:, 0])), h2


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def train(model: Enhancer, x: np.ndarray, y: np.ndarray, seconds: float) -> dict:
    """Adam on MSE to the ideal ratio mask, mini-batches of 16 clips, until ``seconds`` pass."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    t0, epochs, loss = time.monotonic(), 0, float("nan")
    while time.monotonic() - t0 < seconds:
        for idx in torch.randperm(len(xt)).split(16):
            opt.zero_grad()
            err = nn.functional.mse_loss(model(xt[idx]), yt[idx])
            err.backward()
            opt.step()
            loss = float(err)
        epochs += 1
        print(f"  epoch {epochs}: mse {loss:.4f} ({time.monotonic() - t0:.0f} s)", flush=True)
    return {"epochs": epochs, "final_mse": loss, "seconds": round(time.monotonic() - t0, 1)}


def bench(model_path: Path, data: Path, out: Path, extra: list[str]) -> tuple[list[dict], float]:
    cmd = [sys.executable, "-m", "edgernn.cli", "bench", str(model_path), "--data", str(data),
           "--metric-fn", "snr_gain", "--threads", "1", "--out", str(out),
           "--db", str(out.parent / "store.sqlite"), *extra]
    print("$", " ".join(cmd[2:]), flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"bench failed ({proc.returncode}): {proc.stderr[-3000:]}")
    print(proc.stdout)
    return json.loads((out / "results.json").read_text()), time.monotonic() - t0


def summary(rows: list[dict], per: str) -> dict:
    """Per variant: status, size, p50, SNR gain and drop; and which ones are candidates."""
    out = {}
    fp32 = next(r["value"] for r in rows if r["variant"].endswith("/onnx-fp32"))
    for r in rows:
        v = r["variant"].split("/", 1)[1]
        if r["status"] not in ("ok", "accuracy collapsed") or not r.get("latency_ms"):
            continue
        out[v] = {"status": r["status"], "size_bytes": r.get("size_bytes"),
                  f"p50_ms_{per}": r["latency_ms"]["p50"], "snr_gain_db": r["value"],
                  "drop_db": r.get("accuracy_drop"), "rtf": r.get("rtf"),
                  "candidate": abs(r["value"] - fp32) <= WITHIN_DB}
    return out


def best(variants: dict, per: str, family: str) -> tuple[str, float]:
    cands = {v: s[f"p50_ms_{per}"] for v, s in variants.items()
             if s["candidate"] and v.startswith(family) and not v.startswith("torch")}
    v = min(cands, key=cands.get)
    return v, cands[v]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    hidden, bins = (64, 161) if args.quick else (256, 161)
    n_train, n_test, steps = (32, 8, 50) if args.quick else (384, 48, 200)
    with tempfile.TemporaryDirectory(prefix="edgernn-enh-") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        tr = enhancement_pairs(n_train, 100, bins, split="train", seed=1)
        te = enhancement_pairs(n_test, steps, bins, split="test", seed=2)
        data_s = time.monotonic() - t0
        print(f"data: {n_train} train clips, {n_test} test clips of {steps} frames, {data_s:.0f} s")
        torch.manual_seed(0)
        model = Enhancer(bins, hidden)
        fit = train(model, tr.x, tr.y, 20 if args.quick else 240)
        model.eval()
        whole, step = work / "enhancer.pt", work / "enhancer_step.pt"
        torch.jit.save(torch.jit.script(model), str(whole))
        torch.jit.save(torch.jit.script(StepEnhancer(model).eval()), str(step))
        ev = work / "eval.npz"
        np.savez(ev, x=te.x, y=te.y, clean=te.clean, noisy=te.noisy)
        fmts = ["--format", "onnx,tflite-litert,tflite-fused,tflite-loop", "--quantize", "dynamic"]
        timing = ["--runs", "30", "--warmup", "3"] if args.quick else []
        whole_rows, whole_s = bench(whole, ev, work / "whole", [*fmts, *timing])
        step_rows, step_s = bench(step, ev, work / "step", [
            "--input", f"x:batch=1,{bins}", "--input", f"h:2,batch=1,{hidden}",
            "--step-ms", "10", *fmts, *timing])
    w, s = summary(whole_rows, "call"), summary(step_rows, "step")
    bt_w, bt_w_ms = best(w, "call", "tflite")
    scan = w["onnx-int8-scan"]["p50_ms_call"]
    bt_s, bt_s_ms = best(s, "step", "tflite")
    bo_s, bo_s_ms = best(s, "step", "onnx")
    result = {
        "machine": {"cpu": _cpu(), "threads": 1, "runtime": "onnxruntime + LiteRT (host)",
                    "load_average_after": [round(v, 2) for v in os.getloadavg()]},
        "note": "x86 host only; no Pi or phone measured",
        "model": {"bins": bins, "hidden": hidden, "layers": 2, "steps_per_clip": steps,
                  "train_clips": n_train, "test_clips": n_test, "training": fit},
        "whole": {"bench_seconds": round(whole_s, 1), "variants": w},
        "step": {"bench_seconds": round(step_s, 1), "variants": s},
        "ratios": {
            "whole_best_tflite_vs_onnx_int8_scan": {"tflite": bt_w, "ratio": round(bt_w_ms / scan, 3)},
            "step_best_tflite_vs_best_onnx": {"tflite": bt_s, "onnx": bo_s,
                                              "ratio": round(bt_s_ms / bo_s_ms, 3)},
        },
    }
    if not args.quick:
        OUT.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {OUT}")
    print(json.dumps(result["ratios"], indent=1))


if __name__ == "__main__":
    main()
