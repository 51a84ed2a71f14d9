"""Recurrent architectures nobody here wrote, through tflite-fused, tflite-loop and ONNX (issue 21).

Part 1, the corpus (``tests/corpus.py``, test sizes): each model exported with the real
pipeline (onnx, tflite-fused, tflite-loop; fp32 and int8-dynamic); per variant the route taken (ops of the
main graph), file size, parity with PyTorch and p50 latency (LiteRT / onnxruntime called
directly, 1 thread, 20 warm-up calls, median of 200, interleaved across variants).

Part 2, the user's job: a 3-layer LSTM-256 speaker encoder with ``F.normalize`` and a cosine
head over 160 frames x 40 features, trained on features where int8 hurts
(``corpus.speaker_data``: unnormalised, the standardisation folded into the first layer),
traced to TorchScript with no edgernn spec, then plain ``edgernn bench model.pt --data
eval.npz`` (x86 target defaults). Ratios against onnx-fp32 come from that one bench run.

    python benchmarks/real_architectures.py            # ~15 min on 2 cores
    python benchmarks/real_architectures.py --quick    # smaller encoder, fewer runs

Writes ``benchmarks/results/real_architectures.json``. No real Pi or phone: x86 host only.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgernn.convert.exporting import export_model  # noqa: E402
from edgernn.model.loading import LoadedModel  # noqa: E402
from edgernn.model.spec import Axis, InputSpec  # noqa: E402
from tests import corpus  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "real_architectures.json"


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _session(path: str):
    """A callable running the file once on a sample (state reset for .tflite)."""
    if path.endswith(".onnx"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return lambda x: s.run(None, {name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def run(x):
        it.reset_all_variables()
        it.set_tensor(i["index"], x.astype(i["dtype"]))
        it.invoke()
        return it.get_tensor(o["index"])
    return run


def _timed(runs: dict[str, object], x: np.ndarray, n: int) -> dict[str, dict[str, float]]:
    """Median and IQR (ms) per variant, warm-up 20, ``n`` calls interleaved round-robin."""
    for f in runs.values():
        for _ in range(20):
            f(x)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(n):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f(x)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: {"p50_ms": float(np.median(v)),
                "iqr_ms": float(np.percentile(v, 75) - np.percentile(v, 25))} for k, v in times.items()}


def corpus_table(work: Path, n: int) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    for name, (cls, shape, kind, n_lstm, n_gru) in corpus.CORPUS.items():
        torch.manual_seed(0)
        module = cls().eval()
        if kind == "tokens":
            spec = InputSpec([Axis(1, "batch"), Axis(shape[0], "seq")], "int64", "classify",
                             vocab_size=500)
            x = np.random.default_rng(0).integers(0, 500, size=(1, *shape)).astype(np.int64)
        else:
            spec = InputSpec([Axis(1, "batch"), Axis(shape[0], "seq"), Axis(shape[1])], "float32",
                             "classify")
            x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        lm = LoadedModel(module, spec, "pickle", Path(f"{name}.pt"), "0" * 64)
        t0 = time.perf_counter()
        man = export_model(lm, work / name, ["onnx", "tflite-fused", "tflite-loop"], ["dynamic"])
        seconds = time.perf_counter() - t0
        arts = {a["variant"]: a for a in man["artifacts"] if a["status"] == "ok"}
        keep = ["onnx-fp32", "onnx-int8-dynamic", "tflite-fused-fp32", "tflite-fused-int8-dynamic",
                "tflite-loop-fp32", "tflite-loop-int8-dynamic"]
        runs = {v: _session(str(work / name / arts[v]["path"])) for v in keep if v in arts}
        timing = _timed(runs, x, n)
        fused = arts.get("tflite-fused-fp32", {})
        route = next((t for t in fused.get("notes", []) if t.startswith("route:")), "not fused")
        row = {"model": name, "export_seconds": round(seconds, 1), "route": route,
               "fused_parity": fused.get("parity_max_abs_diff"),
               "expected": {"lstm_ops": n_lstm, "gru_loops": n_gru},
               "variants": {v: {"size_bytes": arts[v]["size_bytes"], **timing[v]} for v in runs}}
        rows.append(row)
        print(f"{name:16s} {seconds:5.1f}s  " + "  ".join(
            f"{v}: {t['p50_ms']:.3f} ms {arts[v]['size_bytes'] / 1000:.0f} kB" for v, t in timing.items()),
            flush=True)
    return rows


def encoder_job(work: Path, hidden: int, frames: int, train_n: int, epochs: int,
                offset: float) -> dict:
    t0 = time.perf_counter()
    x, y = corpus.speaker_data(train_n, frames=frames, seed=0, offset=offset)
    xe, ye = corpus.speaker_data(300, frames=frames, seed=1, offset=offset)
    torch.set_num_threads(2)
    model = corpus.train_speaker_encoder(x, y, hidden=hidden, layers=3, epochs=epochs)
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        acc = float(np.mean(model(torch.from_numpy(xe)).argmax(1).numpy() == ye))
    torch.jit.save(torch.jit.trace(model, (torch.from_numpy(xe[:1]),)), str(work / "encoder.pt"))
    np.savez(work / "eval.npz", x=xe, y=ye)
    print(f"encoder: 3 x LSTM {hidden}, {frames} frames, trained in {train_s:.0f} s, "
          f"fp32 accuracy {acc:.3f}", flush=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "edgernn.cli", "bench", str(work / "encoder.pt"), "--data",
           str(work / "eval.npz"), "--out", str(work / "bench"), "--db", str(work / "store.sqlite")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench failed: {proc.stderr.strip().splitlines()[-1:]}")
    print(proc.stdout, flush=True)
    found = json.loads((work / "bench" / "results.json").read_text())
    rows = {r["variant"].split("/", 1)[1]: r for r in found}
    manifest = json.loads((work / "bench" / "encoder" / "manifest.json").read_text())
    export_s = sum(a.get("export_seconds") or 0 for a in manifest["artifacts"])
    unrolled = _unrolled_vs_fused(work, xe[:1], rows)
    return {"hidden": hidden, "frames": frames, "train_samples": train_n, "epochs": epochs,
            "feature_offset": offset, "unrolled_litert_vs_fused": unrolled,
            "train_seconds": round(train_s, 1), "fp32_accuracy": acc, "bench_wall_seconds": round(wall, 1),
            "export_seconds_all_variants": round(export_s, 1), "command": " ".join(cmd[2:]),
            "rows": {v: _brief(r) for v, r in rows.items()}, "checks": _checks(rows)}


def _unrolled_vs_fused(work: Path, x: np.ndarray, rows: dict) -> dict:
    """The unrolled litert-torch file (what TFLite users get elsewhere) timed beside the fused
    file and onnx-fp32 in one process: conversion seconds, size, p50."""
    from edgernn.model.loading import load_model

    lm = load_model(work / "encoder.pt", input_shape=f"batch=1,seq={x.shape[1]},{x.shape[2]}")
    t0 = time.perf_counter()
    man = export_model(lm, work / "unrolled", ["tflite-litert"], [])
    seconds = time.perf_counter() - t0
    art = man["artifacts"][0]
    if art["status"] != "ok":
        return {"status": art["status"], "error": art["error"]}
    paths = {"tflite-litert-fp32 (unrolled)": str(work / "unrolled" / art["path"])}
    for v in ("tflite-fused-fp32", "tflite-loop-fp32", "onnx-fp32"):
        ext = ".tflite" if v.startswith("tflite") else ".onnx"
        paths[v] = str(work / "bench" / "encoder" / f"encoder.{v.rsplit('-', 1)[0]}.fp32{ext}")
    timing = _timed({k: _session(p) for k, p in paths.items()}, x, 30)
    return {"convert_seconds": round(seconds, 1), "ops": sum(art["ops"].values()),
            "timing": {k: {**t, "size_bytes": Path(paths[k]).stat().st_size} for k, t in timing.items()}}


def _brief(r: dict) -> dict:
    lat = r.get("latency_ms") or {}
    return {"status": r["status"], "size_bytes": r.get("size_bytes"), "p50_ms": lat.get("p50"),
            "accuracy": r.get("value"), "drop": r.get("accuracy_drop"),
            "notes": [n for n in r.get("notes") or [] if n.startswith(("route", "mixed"))]}


def _checks(rows: dict) -> dict:
    """The issue's done-when ratios, from this one bench run."""
    ok = {v: r for v, r in rows.items() if r["status"] in ("ok", "collapsed") and r.get("latency_ms")}
    base = ok["onnx-fp32"]["latency_ms"]["p50"]
    size = {v: r.get("size_bytes") or 0 for v, r in ok.items()}

    def fp32_size(v: str) -> float:
        return size.get(v.split("-int8")[0] + "-fp32", 1e18)

    def best(pairs: list[tuple[float, str]]) -> dict | None:
        return {"variant": pairs[0][1], "p50_vs_onnx_fp32": round(pairs[0][0], 3)} if pairs else None

    def fits(r: dict) -> bool:
        return r.get("accuracy_drop") is not None and r["accuracy_drop"] <= 0.005

    tfl = sorted((r["latency_ms"]["p50"] / base, v) for v, r in ok.items()
                 if v.startswith("tflite") and fits(r))
    int8 = sorted((r["latency_ms"]["p50"] / base, v) for v, r in ok.items()
                  if "int8" in v and fits(r) and size[v] <= 0.5 * fp32_size(v))
    bigger = [v for v in ok if "int8" in v and size[v] > fp32_size(v)]
    return {
        "fused_tflite_made": "tflite-fused-fp32" in ok,
        "best_tflite_within_0.5pp": best(tfl),
        "best_int8_within_0.5pp_and_half_size": best(int8),
        "int8_files_larger_than_fp32": bigger,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-corpus", action="store_true",
                    help="keep the corpus table of the last results file")
    ap.add_argument("--offset", type=float, default=1000.0,
                    help="feature level the speaker pattern sits on (corpus.speaker_data)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgernn-real-") as tmp:
        work = Path(tmp)
        result = {"machine": {"cpu": _cpu(), "threads": 1, "python": platform.python_version()},
                  "note": "x86 host only; no real Pi or phone reachable here"}
        if not a.skip_corpus:
            result["corpus"] = corpus_table(work / "corpus", 50 if a.quick else 200)
        elif OUT.exists():
            result["corpus"] = json.loads(OUT.read_text()).get("corpus")
        hidden, frames, n, epochs = (64, 60, 400, 4) if a.quick else (256, 160, 600, 6)
        (work / "enc").mkdir()
        result["encoder"] = encoder_job(work / "enc", hidden, frames, n, epochs, a.offset)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["encoder"]["checks"], indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
