"""Per-step latency of a user's streaming step model: edgernn's ONNX exports against a hand
``torch.onnx.export`` of the same module, in ONE run.

The model is what a keyword spotter / voice-activity detector ships: a conv front end over one
576-sample frame (36 ms at 16 kHz) and an LSTM 128, state [2, 1, 128] in and out, saved with
``torch.jit.script``. Every variant runs in this process with 1 thread (onnxruntime
intra/inter-op 1, torch 1 thread), the state fed back each call; the variants are timed in
interleaved rounds so machine drift falls on all alike. Reported: median per-step latency over
all calls, the spread of the round medians, and the ratio to the hand export. Usage:

    python benchmarks/streaming_step.py [--rounds 15 --calls 400 --out benchmarks/results]
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
import warnings
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.step_models import FRAME, StepKWS  # noqa: E402  (the user's model, plain torch)

HIDDEN = 128


def hand_exports(module: nn.Module, work: Path) -> dict[str, Path]:
    """What a user writes by hand: torch.onnx.export, then onnxruntime's quantize_dynamic."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = work / "hand.onnx"
    with warnings.catch_warnings(), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, FRAME), torch.zeros(2, 1, HIDDEN)), str(fp32),
                          dynamo=False, opset_version=17, input_names=["x", "state"],
                          output_names=["y", "state_out"])
    int8 = work / "hand-int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return {"hand torch.onnx.export fp32": fp32, "hand export + quantize_dynamic": int8}


def edgernn_exports(scripted: Path, work: Path) -> dict[str, Path]:
    from edgernn.api import export

    m = export(scripted, "x86", work / "edgernn", ["onnx"], ["dynamic"],
               {"inputs": [f"x:batch=1,{FRAME}", f"state:2,batch=1,{HIDDEN}"]})
    arts = {a["variant"]: a for a in m["artifacts"]}
    return {f"edgernn {v}": work / "edgernn" / arts[v]["path"]
            for v in ("onnx-fp32", "onnx-int8-dynamic") if arts[v]["status"] == "ok"}


def stepper(call, frames: np.ndarray):
    """A closure doing one step on the next frame with the state fed back."""
    state = [np.zeros((2, 1, HIDDEN), np.float32)]
    pos = [0]

    def step() -> None:
        _, state[0] = call(frames[pos[0] % len(frames)][None], state[0])
        pos[0] += 1
    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=400, help="timed steps per variant per round")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    import onnxruntime as ort

    torch.set_num_threads(1)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="edgernn-stream-"))
    module = StepKWS(hidden=HIDDEN).eval()
    scripted = work / "kws_step.pt"
    torch.jit.save(torch.jit.script(module), str(scripted))
    files = {**hand_exports(module, work), **edgernn_exports(scripted, work)}
    frames = np.random.default_rng(0).standard_normal((64, FRAME)).astype(np.float32)

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    steps = {}
    for name, path in files.items():
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        steps[name] = stepper(lambda x, s, sess=sess, names=names:
                              sess.run(None, {names[0]: x, names[1]: s}), frames)

    @torch.inference_mode()
    def eager(x, s):
        y, s2 = module(torch.from_numpy(x), torch.from_numpy(s))
        return y.numpy(), s2.numpy()
    steps["PyTorch eager fp32"] = stepper(eager, frames)

    samples: dict[str, list[float]] = {k: [] for k in steps}
    rounds: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        for _ in range(50):
            fn()
    for r in range(args.rounds):
        order = list(steps)[r % len(steps):] + list(steps)[:r % len(steps)]
        for name in order:
            fn, got = steps[name], []
            for _ in range(args.calls):
                t0 = time.perf_counter_ns()
                fn()
                got.append((time.perf_counter_ns() - t0) / 1e6)
            samples[name] += got
            rounds[name].append(statistics.median(got))
    hand = statistics.median(samples["hand torch.onnx.export fp32"])
    rows = []
    for name in steps:
        p50 = statistics.median(samples[name])
        rs = rounds[name]
        rows.append({"variant": name, "p50_ms": p50,
                     "p99_ms": float(np.percentile(samples[name], 99)),
                     "round_spread": (max(rs) - min(rs)) / statistics.median(rs),
                     "vs_hand_fp32": p50 / hand,
                     "size_bytes": files[name].stat().st_size if name in files else
                     scripted.stat().st_size})
    meta = {"machine": platform.machine(), "processor": platform.processor(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": ort.__version__, "threads": 1, "rounds": args.rounds,
            "calls_per_round": args.calls, "frame": FRAME, "hidden": HIDDEN,
            "step_ms": FRAME / 16}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "streaming_step.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                             indent=2))
    t = Table(title=f"per-step latency, conv + LSTM {HIDDEN} step model, 1 thread, "
                    f"{args.rounds} interleaved rounds x {args.calls} steps, {platform.machine()}")
    for col in ("variant", "size", "p50 ms", "p99 ms", "round spread", "vs hand fp32",
                "rtf @36 ms"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        t.add_row(r["variant"], f"{r['size_bytes'] / 1e3:.1f} kB", f"{r['p50_ms']:.3f}",
                  f"{r['p99_ms']:.3f}", f"{r['round_spread']:.0%}", f"{r['vs_hand_fp32']:.2f}x",
                  f"{r['p50_ms'] / meta['step_ms']:.4f}")
    Console(width=120 if not sys.stdout.isatty() else None).print(t)
    print(f"wrote {args.out / 'streaming_step.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
