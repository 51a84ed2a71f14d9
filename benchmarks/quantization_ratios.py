"""What int8 quantization buys per call, as a latency RATIO to PyTorch eager fp32, in ONE run.

Models (built here with plain torch, ``torch.manual_seed(0)``, eval mode): a single GRU or
LSTM layer (40 input features, hidden 64/128/256, batch_first) over seq 50, batch 1, then a
Linear head to 5 classes on the last step. Variants of each model, all in this one process
with one thread:

* ``torch-fp32`` (eager, ``torch.set_num_threads(1)``) -- the 1.00x reference;
* ``torch-int8-dynamic``: ``edgernn.convert.quantize.torch_dynamic.torch_int8_module`` (torch.ao
  ``quantize_dynamic`` on LSTM/GRU/Linear);
* ``onnx-fp32``, ``onnx-int8-dynamic``, ``onnx-int8-scan``: edgernn's ONNX export of the
  ``torch.jit.script`` archive (``edgernn.api.export(..., ["onnx"], ["dynamic"])``), run by
  onnxruntime (CPUExecutionProvider, intra/inter-op threads 1);
* ``tflite-litert-fp32``, ``tflite-litert-int8-dynamic``: edgernn's litert-torch export
  (``["tflite-litert"], ["dynamic"]``) of the same archive (falling back to a trusted pickle of
  the eager module if the TorchScript route fails; the JSON says which route was used), run by
  ``ai_edge_litert.interpreter.Interpreter(num_threads=1)``, tensors allocated once.

Timing, per model: every variant is warmed up (50 calls), then R interleaved rounds (the order
rotates each round) of N calls per variant, each call timed with ``time.perf_counter_ns``.
Reported per variant: the median over all R*N calls, and the ratio of its round median to
torch-fp32's median of the SAME round -- median over rounds, with [min..max]. Ratios within a
round are what a shared, noisy machine can tell; absolute milliseconds drift between runs.
Also: file size in kB (1000 bytes; torch rows: ``torch.save`` of the state_dict), the int8 share
of weight elements (ONNX/TFLite: the manifest's ``quantized_fraction``; torch-int8: the
LSTM/GRU/Linear weight matrices over all parameters, counted here), and the max |output -
torch fp32 output| over 20 random standard-normal inputs.

Usage:

    python benchmarks/quantization_ratios.py [--hidden 64,128,256 --rounds 9 --calls 200
                                              --out benchmarks/results]

Writes ``<out>/quantization_ratios.json`` (``meta`` + ``rows``) and prints a table.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgernn.api import export  # noqa: E402
from edgernn.convert.quantize.torch_dynamic import torch_int8_module  # noqa: E402

FEATURES, SEQ, CLASSES = 40, 50, 5
WARMUP = 50
PARITY = 20
INPUT_SHAPE = f"batch=1,seq={SEQ},{FEATURES}"
ONNX_VARIANTS = ("onnx-fp32", "onnx-int8-dynamic", "onnx-int8-scan")
LITERT_VARIANTS = ("tflite-litert-fp32", "tflite-litert-int8-dynamic")


class Net(nn.Module):
    """One recurrent layer and a Linear head on the last step (what a user writes)."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        rnn = nn.GRU if kind == "gru" else nn.LSTM
        self.rnn = rnn(FEATURES, hidden, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def state_bytes(module: nn.Module) -> int:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(module.state_dict(), buf)
    return buf.tell()


def int8_weight_share(module: nn.Module) -> float:
    """Share of parameter elements torch.ao dynamic int8 stores as qint8: the weight matrices
    of LSTM/GRU/Linear (biases stay fp32)."""
    total = sum(p.numel() for p in module.parameters())
    q = sum(p.numel() for m in module.modules() if isinstance(m, (nn.LSTM, nn.GRU, nn.Linear))
            for n, p in m.named_parameters(recurse=False) if n.startswith("weight"))
    return q / total


def torch_call(module: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def call(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()
    return call


def onnx_call(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def litert_call(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    out = it.get_output_details()[0]["index"]

    def call(x: np.ndarray) -> np.ndarray:
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(out)
    return call


def artifacts(manifest: dict[str, Any], out_dir: Path, wanted: tuple[str, ...],
              failures: list[str], model: str) -> dict[str, dict[str, Any]]:
    """The wanted variants that exported fine, with absolute paths; the rest go to failures."""
    arts = {a["variant"]: a for a in manifest.get("artifacts", [])}
    got = {}
    for v in wanted:
        a = arts.get(v)
        if a is None:
            failures.append(f"{model} {v}: not in the manifest")
        elif a.get("status") != "ok":
            failures.append(f"{model} {v}: {a.get('status')}: {a.get('error')}")
        else:
            got[v] = {**a, "abs_path": out_dir / a["path"]}
    return got


def export_litert(module: nn.Module, scripted: Path, work: Path, failures: list[str],
                  model: str) -> tuple[dict[str, dict[str, Any]], str]:
    """LiteRT variants through the TorchScript archive, else a trusted pickle of the module."""
    out = work / "litert"
    try:
        m = export(scripted, "x86", out, ["tflite-litert"], ["dynamic"],
                   {"input_shape": INPUT_SHAPE})
        got = artifacts(m, out, LITERT_VARIANTS, [], model)
        if len(got) == len(LITERT_VARIANTS):
            return got, "torchscript"
        why = "; ".join(f"{a['variant']}: {a.get('error')}" for a in m.get("artifacts", [])
                        if a.get("status") != "ok")
    except Exception as e:  # noqa: BLE001  (report and try the other route)
        why = f"{type(e).__name__}: {e}".splitlines()[0]
    failures.append(f"{model} tflite-litert via TorchScript failed ({why}); trying torch.save pickle")
    pickled = work / "eager.pt"
    torch.save(module, pickled)
    out = work / "litert-pickle"
    try:
        m = export(pickled, "x86", out, ["tflite-litert"], ["dynamic"],
                   {"input_shape": INPUT_SHAPE, "trust_pickle": True, "imports": ("__main__",)})
    except Exception as e:  # noqa: BLE001
        failures.append(f"{model} tflite-litert via pickle failed: {type(e).__name__}: {e}"
                        .splitlines()[0])
        return {}, "failed"
    return artifacts(m, out, LITERT_VARIANTS, failures, model), "pickle"


def time_variants(calls: dict[str, Callable[[np.ndarray], np.ndarray]], xs: list[np.ndarray],
                  rounds: int, n: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """All per-call ms and per-round medians, variants interleaved with a rotating order."""
    samples: dict[str, list[float]] = {k: [] for k in calls}
    medians: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():
        for i in range(WARMUP):
            fn(xs[i % len(xs)])
    names = list(calls)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn, got = calls[name], []
            for i in range(n):
                x = xs[i % len(xs)]
                t0 = time.perf_counter_ns()
                fn(x)
                got.append((time.perf_counter_ns() - t0) / 1e6)
            samples[name] += got
            medians[name].append(statistics.median(got))
    return samples, medians


def bench_model(kind: str, hidden: int, work: Path, args: argparse.Namespace,
                failures: list[str]) -> tuple[list[dict[str, Any]], str]:
    model = f"{kind}{hidden}"
    torch.manual_seed(0)
    module = Net(kind, hidden).eval()
    work.mkdir(parents=True, exist_ok=True)
    scripted = work / f"{model}.pt"
    torch.jit.save(torch.jit.script(module), str(scripted))

    info: dict[str, dict[str, Any]] = {
        "torch-fp32": {"size_bytes": state_bytes(module), "quantized_fraction": None},
    }
    calls: dict[str, Callable[[np.ndarray], np.ndarray]] = {"torch-fp32": torch_call(module)}
    try:
        q = torch_int8_module(module).eval()
        calls["torch-int8-dynamic"] = torch_call(q)
        info["torch-int8-dynamic"] = {"size_bytes": state_bytes(q),
                                      "quantized_fraction": int8_weight_share(module)}
    except Exception as e:  # noqa: BLE001
        failures.append(f"{model} torch-int8-dynamic: {type(e).__name__}: {e}".splitlines()[0])

    t0 = time.perf_counter()
    try:
        m = export(scripted, "x86", work / "onnx", ["onnx"], ["dynamic"],
                   {"input_shape": INPUT_SHAPE})
        onnx_arts = artifacts(m, work / "onnx", ONNX_VARIANTS, failures, model)
    except Exception as e:  # noqa: BLE001
        failures.append(f"{model} onnx export: {type(e).__name__}: {e}".splitlines()[0])
        onnx_arts = {}
    onnx_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lite_arts, route = export_litert(module, scripted, work, failures, model)
    lite_s = time.perf_counter() - t0
    print(f"{model}: onnx export {onnx_s:.1f} s, tflite-litert export {lite_s:.1f} s "
          f"(route: {route})", flush=True)
    for v, a in onnx_arts.items():
        calls[v], info[v] = onnx_call(a["abs_path"]), a
    for v, a in lite_arts.items():
        try:
            calls[v], info[v] = litert_call(a["abs_path"]), a
        except Exception as e:  # noqa: BLE001
            failures.append(f"{model} {v} interpreter: {type(e).__name__}: {e}".splitlines()[0])

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, SEQ, FEATURES)).astype(np.float32) for _ in range(PARITY)]
    ref = [calls["torch-fp32"](x) for x in xs]
    diffs: dict[str, float] = {}
    for v, fn in list(calls.items()):
        try:
            diffs[v] = max(float(np.max(np.abs(fn(x).reshape(r.shape) - r)))
                           for x, r in zip(xs, ref, strict=True))
        except Exception as e:  # noqa: BLE001
            failures.append(f"{model} {v} run: {type(e).__name__}: {e}".splitlines()[0])
            del calls[v]

    samples, medians = time_variants(calls, xs, args.rounds, args.calls)
    base_rounds = medians["torch-fp32"]
    rows = []
    for v in calls:
        ratios = [a / b for a, b in zip(medians[v], base_rounds, strict=True)]
        a = info[v]
        rows.append({
            "model": model, "kind": kind, "hidden": hidden, "variant": v,
            "size_bytes": a.get("size_bytes"), "quantized_fraction": a.get("quantized_fraction"),
            "p50_ms": statistics.median(samples[v]),
            "p90_ms": float(np.percentile(samples[v], 90)),
            "round_medians_ms": medians[v],
            "round_ratios": ratios,
            "ratio_vs_torch": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "max_abs_diff_vs_torch": diffs[v] if v != "torch-fp32" else 0.0,
            "backend": a.get("backend"),
        })
    return rows, route


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", default="64,128,256", help="comma-separated hidden sizes")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=200, help="timed calls per variant per round")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    import ai_edge_litert
    import onnxruntime as ort

    start = time.perf_counter()
    torch.set_num_threads(1)
    hiddens = [int(h) for h in args.hidden.split(",")]
    work = Path(tempfile.mkdtemp(prefix="edgernn-qratios-"))
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    routes: dict[str, str] = {}
    for kind in ("gru", "lstm"):
        for hidden in hiddens:
            model = f"{kind}{hidden}"
            try:
                got, routes[model] = bench_model(kind, hidden, work / model, args, failures)
                rows += got
            except Exception as e:  # noqa: BLE001
                failures.append(f"{model}: {type(e).__name__}: {e}".splitlines()[0])
                traceback.print_exc()

    elapsed = time.perf_counter() - start
    meta = {"machine": platform.machine(), "processor": platform.processor(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
            "threads": 1, "rounds": args.rounds, "calls": args.calls, "warmup": WARMUP,
            "features": FEATURES, "seq": SEQ, "batch": 1, "classes": CLASSES,
            "parity_inputs": PARITY, "litert_route": routes, "failures": failures,
            "total_seconds": elapsed}
    args.out.mkdir(parents=True, exist_ok=True)
    dest = args.out / "quantization_ratios.json"
    dest.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))

    console = Console(width=120)
    t = Table(title=f"latency vs PyTorch eager fp32, one run: {args.rounds} interleaved rounds x "
                    f"{args.calls} calls, 1 thread, batch 1, seq {SEQ}, {platform.machine()}")
    for col in ("model", "variant", "size kB", "int8 share", "p50 ms", r"ratio vs torch \[min..max]",
                "max diff"):
        t.add_column(col, justify="left" if col in ("model", "variant") else "right")
    last = None
    for r in rows:
        if last is not None and r["model"] != last:
            t.add_section()
        last = r["model"]
        frac = r["quantized_fraction"]
        t.add_row(r["model"], r["variant"],
                  f"{r['size_bytes'] / 1e3:.1f}" if r["size_bytes"] else "-",
                  f"{frac:.0%}" if frac is not None else "-", f"{r['p50_ms']:.3f}",
                  f"{r['ratio_vs_torch']:.2f}x \\[{r['ratio_min']:.2f}..{r['ratio_max']:.2f}]",
                  "-" if r["variant"] == "torch-fp32" else f"{r['max_abs_diff_vs_torch']:.1e}")
    console.print(t)
    console.print(f"litert route: {routes}")
    for f in failures:
        console.print(f"[red]failed:[/red] {escape(f)}")
    console.print(f"total {elapsed:.0f} s; wrote {dest}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
