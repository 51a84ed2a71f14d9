"""bench: export every variant, measure each on a target, compare against fp32 PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.artifact import Artifact
from edgernn.data.evalfile import check_fits, load_eval
from edgernn.errors import EdgeRNNError, RunnerError
from edgernn.exporting import export_model
from edgernn.formats import expand_formats, get_format
from edgernn.loading import LoadedModel, load_model
from edgernn.probe.metrics import HIGHER_IS_BETTER, PRIMARY, degradation
from edgernn.runners import get_runner
from edgernn.runners.local import LocalRunner
from edgernn.target import Target

BASELINE = "torch-fp32"


@dataclass
class BenchSettings:
    threads: int | None = None
    warmup: int = 20
    min_runs: int = 100
    max_runs: int = 3000
    min_seconds: float = 1.0
    eval_batch: int = 1  # batch 1 as deployed: dynamic int8 scales depend on the batch
    collapse: float = 0.10  # relative degradation of the primary metric that marks a collapse
    formats: list[str] | None = None
    modes: list[str] | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    calib_path: Path | None = None
    calib_samples: int = 200


def _job(settings: BenchSettings, target: Target, threads: int) -> dict[str, Any]:
    return {
        "threads": threads, "cpus": target.cpus, "warmup": settings.warmup,
        "min_runs": settings.min_runs, "max_runs": settings.max_runs,
        "min_seconds": settings.min_seconds, "eval_batch": settings.eval_batch, "data": "data",
    }


def base_row(model: LoadedModel, art: Artifact, target: Target, task: str) -> dict[str, Any]:
    return {
        "model": model.name, "model_sha256": model.sha256,
        "variant": f"{model.name}/{art.variant}", "format": art.format,
        "quantization": art.quantization, "runtime": art.runtime, "runtime_version": None,
        "target": target.name, "emulated": target.emulated, "status": art.status,
        "reason": art.error, "size_bytes": art.size_bytes or None, "latency_ms": None,
        "peak_mb": None, "peak_rss_mb": None, "metric": PRIMARY[task], "value": None,
        "metrics": None, "accuracy_drop": None, "relative_drop": None, "agreement": None,
        "parity_max_abs_diff": art.parity_max_abs_diff, "export_parity_max_abs_diff":
        art.parity_max_abs_diff, "notes": list(art.notes), "threads": None, "device": None,
        "accepts_other_seq_len": art.accepts_other_seq_len,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def fill_row(row: dict[str, Any], res: dict[str, Any]) -> None:
    lat = dict(res["latency_ms"])
    lat["first"], lat["load"] = res["first_ms"], res["load_ms"]
    row.update(
        runtime=res["runtime"], runtime_version=res["runtime_version"], latency_ms=lat,
        peak_mb=res.get("peak_delta_mb", res.get("peak_rss_mb")),
        peak_rss_mb=res.get("peak_rss_mb"), metrics=res["metrics"],
        value=res["metrics"][row["metric"]], threads=res["threads"], device=res["device"],
        eval_samples=res.get("eval_samples"),
    )
    if "parity_max_abs_diff" in res:
        row["parity_max_abs_diff"] = res["parity_max_abs_diff"]
        row["agreement"] = res["agreement"]


def judge(row: dict[str, Any], baseline: dict[str, Any] | None, collapse: float) -> None:
    """Accuracy drop against the fp32 PyTorch row; mark a collapse."""
    if baseline is None or baseline.get("value") is None or row.get("value") is None:
        return
    metric = row["metric"]
    drop = degradation(baseline["value"], row["value"], metric)
    row["accuracy_drop"] = drop
    scale = abs(baseline["value"]) or 1.0
    row["relative_drop"] = drop / scale
    if row["status"] == "ok" and drop / scale > collapse:
        row["status"] = "accuracy collapsed"
        better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
        row["reason"] = (f"{metric} {row['value']:.4g} vs fp32 {baseline['value']:.4g} "
                         f"({better} is better): worse by {drop / scale:.0%} > {collapse:.0%}")


def bench_model(
    model_path: Path, target: Target, data_path: Path, out_dir: Path, settings: BenchSettings,
    on_row: Callable[[dict[str, Any]], None], on_step: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Bench one model; every finished row is handed to ``on_row`` at once."""
    step = on_step or (lambda _m: None)
    model = load_model(model_path, **settings.load_options)
    data = load_eval(data_path)
    task = model.spec.task or data.task
    x = check_fits(data, model.spec)
    work = out_dir / model.name
    work.mkdir(parents=True, exist_ok=True)
    formats = check_formats(target, settings.formats or target.formats)
    modes = settings.modes if settings.modes is not None else target.quantize
    calib, calib_source = calibration_data(settings, model, x)
    manifest = export_model(model, work, formats, modes, target.name, on_step=step,
                            calib=calib, calib_source=calib_source)
    arts = [Artifact.from_dict(a) for a in manifest["artifacts"]]
    threads = settings.threads or target.threads
    data_file = work / "probe-data.npz"
    np.savez(data_file, x=x, y=data.y)
    rows: list[dict[str, Any]] = []

    # fp32 PyTorch baseline, always on this host (devices do not run PyTorch)
    step(f"{model.name}: measure {BASELINE} (host)")
    torch_art = Artifact(BASELINE, "torch", "fp32", "torch", path=str(model.path),
                         size_bytes=model.path.stat().st_size, accepts_other_seq_len=True,
                         dynamic_batch=True)
    brow = base_row(model, torch_art, target, task)
    brow["target"] = "host"
    local = LocalRunner(target)
    try:
        outputs = work / "reference-outputs.npy"
        job = {**_job(settings, target, threads), "runtime": "torch", "path": "model",
               "task": task, "batch_axis": model.spec.batch_axis, "save_outputs": str(outputs),
               "options": _torch_options(settings.load_options, model)}
        res = local.measure(job, {"data": data_file, "model": model.path})
        fill_row(brow, res)
        brow["parity_max_abs_diff"], brow["agreement"] = 0.0, 1.0
        np.savez(data_file, x=x, y=data.y, reference=np.load(outputs))
        baseline: dict[str, Any] | None = brow
    except RunnerError as e:
        brow.update(status="run failed", reason=str(e))
        baseline = None
    finally:
        local.close()
    rows.append(brow)
    on_row(brow)

    runner = get_runner(target)
    try:
        for art in arts:
            row = base_row(model, art, target, task)
            seq_axis = model.spec.seq_axis
            if (art.status == "ok" and not art.accepts_other_seq_len and seq_axis is not None
                    and x.shape[_data_axis(seq_axis, model.spec.batch_axis)]
                    != model.spec.shape[seq_axis]):
                row.update(status="skipped", reason=(
                    f"artifact is fixed at sequence length {model.spec.shape[seq_axis]}; the "
                    f"data has {x.shape[_data_axis(seq_axis, model.spec.batch_axis)]}"))
            elif art.status == "ok":
                step(f"{model.name}: measure {art.variant} on {target.name}")
                art_path = work / art.path
                job = {**_job(settings, target, threads), "runtime": target.runtimes[art.format],
                       "path": "artifact", "task": task, "batch_axis": model.spec.batch_axis}
                try:
                    fill_row(row, runner.measure(job, {"data": data_file, "artifact": art_path}))
                except RunnerError as e:
                    row.update(status="run failed", reason=str(e))
                judge(row, baseline, settings.collapse)
            rows.append(row)
            on_row(row)
    finally:
        runner.close()
    return rows


def check_formats(target: Target, formats: list[str]) -> list[str]:
    """Plug-in names for ``formats``; error when the target has no runtime for one."""
    names = expand_formats(formats)
    bad = [n for n in names if get_format(n).family not in target.runtimes]
    if bad:
        raise EdgeRNNError(
            f"target {target.name} has no runtime for format(s) {', '.join(bad)}; "
            f"it runs {', '.join(target.runtimes)}"
        )
    return names


def calibration_data(
    settings: BenchSettings, model: LoadedModel, x: np.ndarray
) -> tuple[np.ndarray | None, str | None]:
    """Inputs for full-int8 calibration: ``--calib`` if given, else a slice of the eval data."""
    if settings.calib_path:
        cal = load_eval(settings.calib_path)
        cx = check_fits(cal, model.spec)
        return cx[: settings.calib_samples], (
            f"{settings.calib_path} ({min(len(cx), settings.calib_samples)} samples)")
    n = min(len(x), settings.calib_samples)
    return x[:n], (f"first {n} samples of the evaluation data (no --calib given; they are also "
                   "evaluated, so int8 accuracy may be slightly optimistic)")


def _data_axis(model_axis: int, batch_axis: int) -> int:
    if model_axis == batch_axis:
        return 0
    return model_axis + 1 if model_axis < batch_axis else model_axis


def _torch_options(load_options: dict[str, Any], model: LoadedModel) -> dict[str, Any]:
    opts = dict(load_options)
    opts["imports"] = list(opts.get("imports", ()))
    return opts
