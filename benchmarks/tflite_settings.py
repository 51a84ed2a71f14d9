"""litert-torch .tflite quantization settings, measured on this host: fp32, int8-dynamic
(channelwise), int8-weight-only and int8-dynamic-pertensor (edgernn's ``--tune`` variants).

Models (plain torch, ``torch.manual_seed(0)``, eval): one GRU or LSTM layer (40 features,
hidden 128, batch_first) over seq 50, batch 1, then a Linear head to 5 classes on the last step,
converted by edgernn's tflite-litert format (unrolled) and quantized by the quantizer classes.

Timing: ``ai_edge_litert.interpreter.Interpreter(num_threads=1)``, tensors allocated once, the
same input each call; two op resolvers: ``xnnpack`` (the default, XNNPACK delegate) and
``builtin`` (no default delegate). Every (variant, resolver) warmed up with 20 calls, then R
interleaved rounds of N calls (order rotates per round); reported: median of all R*N calls
(``time.perf_counter_ns``), file size, and agreement with fp32 (share of equal argmax, max
|output - fp32 output|) over 50 standard-normal inputs.

Usage: python benchmarks/tflite_settings.py [--hidden 128 --seq 50 --rounds 5 --calls 60]
Writes ``benchmarks/results/tflite_settings.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

import edgernn.convert.formats.tflite_litert as tfl  # noqa: E402
from edgernn.convert.quantize.tflite_litert import LitertDynamicInt8  # noqa: E402
from edgernn.convert.quantize.tflite_mixed import LitertDynamicPerTensor, LitertWeightOnlyInt8  # noqa: E402
from edgernn.model.loading import LoadedModel  # noqa: E402
from edgernn.model.spec import Axis, InputSpec  # noqa: E402

FEATURES, CLASSES = 40, 5
RESOLVERS = {"xnnpack": OpResolverType.AUTO,
             "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


class Head(nn.Module):
    def __init__(self, cell: type[nn.Module], hidden: int):
        super().__init__()
        self.rnn = cell(FEATURES, hidden, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _interp(path: str, resolver: str) -> Interpreter:
    it = Interpreter(model_path=path, num_threads=1,
                     experimental_op_resolver_type=RESOLVERS[resolver])
    it.allocate_tensors()
    return it


def _outputs(path: str, xs: np.ndarray) -> np.ndarray:
    it = _interp(path, "xnnpack")
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for x in xs:
        it.set_tensor(i, x[None])
        it.invoke()
        out.append(it.get_tensor(o).copy())
    return np.concatenate(out)


def _time(files: dict[str, str], rounds: int, calls: int, seq: int) -> dict[str, float]:
    x = np.random.default_rng(1).standard_normal((1, seq, FEATURES)).astype(np.float32)
    runs = {}
    for label, path in files.items():
        for res in RESOLVERS:
            it = _interp(path, res)
            it.set_tensor(it.get_input_details()[0]["index"], x)
            for _ in range(20):
                it.invoke()
            runs[(label, res)] = (it, [])
    keys = list(runs)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            it, times = runs[k]
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                it.invoke()
                times.append(time.perf_counter_ns() - t0)
    return {f"{label}/{res}": statistics.median(t) / 1e6 for (label, res), (_, t) in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seq", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    xs = np.random.default_rng(0).standard_normal((50, a.seq, FEATURES)).astype(np.float32)
    for name, cell in (("gru", nn.GRU), ("lstm", nn.LSTM)):
        torch.manual_seed(0)
        module = Head(cell, a.hidden).eval()
        spec = InputSpec([Axis(1, "batch"), Axis(a.seq, "seq"), Axis(FEATURES)], "float32",
                         "classify", num_classes=CLASSES)
        lm = LoadedModel(module, spec, "checkpoint", Path(f"{name}.pt"), "0" * 64)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            t0 = time.perf_counter()
            fp32 = tfl.TfliteLitertFormat().export(lm, d / "fp32.tflite")
            convert_s = time.perf_counter() - t0
            files, notes = {"fp32": fp32.path}, {}
            for q in (LitertDynamicInt8(), LitertWeightOnlyInt8(), LitertDynamicPerTensor()):
                art = q.quantize(lm, fp32, d / f"{q.label}.tflite")
                files[q.label], notes[q.label] = art.path, art.notes
            p50 = _time(files, a.rounds, a.calls, a.seq)
            ref = _outputs(fp32.path, xs)
            for label, path in files.items():
                out = _outputs(path, xs)
                rows.append({
                    "model": f"{name} h{a.hidden} seq{a.seq}", "variant": label,
                    "size_kb": Path(path).stat().st_size / 1000,
                    "p50_ms_xnnpack": p50[f"{label}/xnnpack"],
                    "p50_ms_builtin": p50[f"{label}/builtin"],
                    "argmax_agreement": float(np.mean(out.argmax(1) == ref.argmax(1))),
                    "max_abs_diff": float(np.max(np.abs(out - ref))),
                    "notes": notes.get(label, fp32.notes), "convert_seconds": convert_s,
                })
    meta = {"host": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "threads": 1, "batch": 1,
            "calls_per_variant": a.rounds * a.calls, "warmup": 20,
            "caveat": "shared 2-core VM, another test run may have been using the other core"}
    from importlib.metadata import version

    meta["versions"] = {d: version(d) for d in ("ai-edge-litert", "ai-edge-quantizer",
                                                "litert-torch", "torch")}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "tflite_settings.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"{'model':<18} {'variant':<24} {'kB':>7} {'p50 xnnpack':>12} {'p50 builtin':>12} "
          f"{'agree':>6} {'max|d|':>8}")
    for r in rows:
        print(f"{r['model']:<18} {r['variant']:<24} {r['size_kb']:>7.1f} "
              f"{r['p50_ms_xnnpack']:>10.3f}ms {r['p50_ms_builtin']:>10.3f}ms "
              f"{r['argmax_agreement']:>6.2f} {r['max_abs_diff']:>8.2g}")


if __name__ == "__main__":
    main()
