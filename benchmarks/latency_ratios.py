"""Latency of every variant as a ratio to PyTorch eager fp32, measured in ONE run.

Ratios within one run are what this shared, noisy machine can tell truthfully (absolute
timings drift 35-50% between runs). Usage:

    python benchmarks/latency_ratios.py                      # trains lstm:128 and gru:128
    python benchmarks/latency_ratios.py --model a.pt --model b.pt --data eval.npz
    python benchmarks/latency_ratios.py --format tflite-keras,tflite-litert --quantize all
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgernn.api import bench, train_model
from edgernn.measure.bench import BenchSettings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", action="append", type=Path, help="model.pt (repeatable)")
    ap.add_argument("--data", type=Path, help="evaluation .npz (with --model)")
    ap.add_argument("--dataset", default="weather")
    ap.add_argument("--layers", default="lstm:128,gru:128",
                    help="comma-separated single-layer models to train, e.g. lstm:128,gru:128")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--format", default="onnx,tflite",
                    help="formats/backends; the default compares ONNX and every TFLite backend")
    ap.add_argument("--quantize", default="dynamic,fp16,int8")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="edgernn-bench-"))
    models, data = args.model, args.data
    if not models:
        models = []
        data = work / "eval.npz"
        for spec in args.layers.split(","):
            path = work / f"{spec.replace(':', '')}.pt"
            train_model(args.dataset, spec, path, data, epochs=args.epochs)
            models.append(path)
    settings = BenchSettings(
        threads=args.threads, min_runs=args.runs, min_seconds=args.min_seconds, warmup=50,
        max_runs=1_000_000,
        formats=args.format.split(","),
        modes=[] if args.quantize == "none" else
        (["dynamic", "fp16", "int8"] if args.quantize == "all" else args.quantize.split(",")),
    )
    console = Console(width=None if sys.stdout.isatty() else 160)
    with console.status("measuring") as st:
        rows = bench(models, "x86", data, work / "bench", settings, on_step=st.update)

    table = Table(title=f"latency vs PyTorch eager fp32, one run ({settings.trials} interleaved "
                        f"trials per variant), {platform.machine()} "
                        f"{rows[0]['device'].get('cpu_model', '?')}, {args.threads} thread(s), "
                        "batch 1")
    for col in ("model", "variant", "backend", "runtime", "status", "kB", "p50 ms", "spread",
                "IQR ms", "runs", "ratio to torch", "acc drop"):
        table.add_column(col, justify="right" if "ms" in col or col in (
            "runs", "ratio to torch", "kB", "spread", "acc drop") else "left")
    base = {r["model"]: r["latency_ms"]["p50"] for r in rows
            if r["variant"].endswith("/torch-fp32") and r["latency_ms"]}
    for r in rows:
        lat = r.get("latency_ms")
        ratio = f"{lat['p50'] / base[r['model']]:.2f}x" if lat and r["model"] in base else "-"
        drop = r.get("accuracy_drop")
        table.add_row(r["model"], r["variant"].split("/", 1)[1], (r.get("backend") or "-")[:40],
                      f"{r['runtime']} {r.get('runtime_version') or ''}", r["status"],
                      f"{r['size_bytes'] / 1000:.1f}" if r.get("size_bytes") else "-",
                      f"{lat['p50']:.4f}" if lat else "-",
                      f"{lat.get('spread', 0):.0%}" if lat else "-",
                      f"{lat['iqr']:.4f}" if lat else "-",
                      str(lat["count"]) if lat else "-", ratio,
                      f"{drop:+.4f}" if drop is not None else "-")
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    dest = args.out / "latency_ratios.json"
    dest.write_text(json.dumps(rows, indent=2, default=str))
    console.print(f"rows: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
