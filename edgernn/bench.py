"""bench: export every variant, measure each on a target, compare against fp32 PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.artifact import Artifact
from edgernn.data.evalfile import check_fits, check_targets, load_eval
from edgernn.errors import EdgeRNNError, RunnerError
from edgernn.exporting import export_model, load_manifest
from edgernn.formats import expand_formats, get_format
from edgernn.loading import LoadedModel, load_model, sha256_file
from edgernn.probe.metrics import HIGHER_IS_BETTER, PRIMARY, degradation
from edgernn.quantize import label_for
from edgernn.runners import get_runner, sub_variants
from edgernn.runners.local import LocalRunner
from edgernn.target import Target

BASELINE = "torch-fp32"


@dataclass
class BenchSettings:
    threads: int | None = None
    warmup: int = 20
    min_runs: int = 100
    max_runs: int = 1_000_000  # a safety cap only: --runs and --min-seconds decide
    min_seconds: float = 1.0
    eval_batch: int = 1  # batch 1 as deployed: dynamic int8 scales depend on the batch
    collapse: float = 0.10  # relative degradation of the primary metric that marks a collapse
    formats: list[str] | None = None
    modes: list[str] | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    calib_path: Path | None = None
    calib_samples: int = 200
    store: Any = None  # edgernn.store.Store: rows are saved there and reused unless force
    force: bool = False


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
        "accepts_other_seq_len": art.accepts_other_seq_len, "calibration": art.calibration,
        "backend": art.backend,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    } | ({"notes": [*art.notes, f"calibrated on {art.calibration}"]} if art.calibration else {})


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
    row["thermal"] = {"before": res.get("thermal_before"), "after": res.get("thermal_after")}
    row["throttled"] = res.get("throttled")
    if res.get("throttled"):
        row["notes"] = [*row.get("notes", []), "the device THROTTLED during this run (vcgencmd "
                        "get_throttled); its latency is not representative"]
    for key in ("latency_note", "latency_source", "accuracy_source", "delegate", "benchmark"):
        if key in res:
            row[key] = res[key]
    if res.get("notes"):
        row["notes"] = [*row.get("notes", []), *res["notes"]]
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
    """Bench one model; every finished row is stored and handed to ``on_row`` at once."""
    step = on_step or (lambda _m: None)
    model = load_model(model_path, **settings.load_options)
    data = load_eval(data_path)
    data_sha = sha256_file(Path(data_path))
    task = model.spec.task or data.task
    x = check_fits(data, model.spec)
    check_targets(data, model.spec, task)
    work = out_dir / model.name
    work.mkdir(parents=True, exist_ok=True)
    formats = check_formats(target, settings.formats or target.formats)
    modes = settings.modes if settings.modes is not None else target.quantize
    threads = settings.threads or target.threads
    store = settings.store
    rows: list[dict[str, Any]] = []

    def cached(variant: str) -> dict[str, Any] | None:
        if store is None or settings.force:
            return None
        hit = store.find(model.sha256, f"{model.name}/{variant}", row_target(variant),
                         data_sha, threads)
        if hit:
            hit["cached"] = True
        return hit

    def row_target(variant: str) -> str:
        # PyTorch runs on this host; it is the target itself only for a local target
        return target.name if variant != BASELINE or target.runner == "local" else "host"

    def emit(row: dict[str, Any]) -> None:
        row.setdefault("data_sha256", data_sha)
        row.setdefault("requested_threads", threads)
        if store is not None and not row.get("cached"):
            store.add(row)
        rows.append(row)
        on_row(row)

    manifest = None if settings.force else reuse_manifest(work, model, formats, modes)
    if manifest is None:
        calib, calib_source = calibration_data(settings, model, x)
        manifest = export_model(model, work, formats, modes, target.name, on_step=step,
                                calib=calib, calib_source=calib_source)
    arts = [Artifact.from_dict(a) for a in manifest["artifacts"]]
    subs = sub_variants(target)

    def vname(art: Artifact, sub: str | None) -> str:
        return art.variant + (f"@{sub}" if sub else "")

    plan = [(a, d) for a in arts for d in (subs if a.status == "ok" else [None])]
    hits = {vname(a, d): cached(vname(a, d)) for a, d in plan}
    if any(h and h.get("runtime_version") for h in hits.values()):
        # a stored row counts only if the target still has the runtime version that made it
        try:
            probe = get_runner(target)
            try:
                installed = probe.facts().get("runtimes") or {}
            finally:
                probe.close()
        except RunnerError:
            installed = {}
        for variant, hit in hits.items():
            if hit and hit.get("runtime_version") and \
                    installed.get(runtime_module(hit["runtime"])) != hit["runtime_version"]:
                hits[variant] = None
    data_file = work / "probe-data.npz"
    reference = work / f"reference-{model.sha256[:12]}-{data_sha[:12]}.npy"

    # fp32 PyTorch baseline, always on this host (devices do not run PyTorch)
    baseline = cached(BASELINE)
    if baseline and baseline.get("runtime_version") != host_version("torch"):
        baseline = None
    need_reference = any(hits[vname(a, d)] is None and a.status == "ok" for a, d in plan)
    if baseline is None or (need_reference and not reference.exists()):
        np.savez(data_file, x=x, y=data.y)
        baseline = measure_baseline(model, target, settings, threads, task, data_file, reference,
                                    row_target(BASELINE), step)
    emit(baseline)
    if baseline["status"] != "ok":
        baseline = None
    if need_reference and reference.exists():
        np.savez(data_file, x=x, y=data.y, reference=np.load(reference))

    runner = None
    try:
        for i, (art, sub) in enumerate(plan):
            if hits[vname(art, sub)] is not None:
                emit(hits[vname(art, sub)])
                continue
            row = base_row(model, art, target, task)
            row["variant"] = f"{model.name}/{vname(art, sub)}"
            seq_axis = model.spec.seq_axis
            data_seq = (x.shape[_data_axis(seq_axis, model.spec.batch_axis)]
                        if seq_axis is not None else None)
            if (art.status == "ok" and not art.accepts_other_seq_len and seq_axis is not None
                    and data_seq != model.spec.shape[seq_axis]):
                row.update(status="skipped", reason=(
                    f"artifact is fixed at sequence length {model.spec.shape[seq_axis]}; the "
                    f"data has {data_seq}"))
            elif art.status == "ok":
                step(f"{model.name}: [{i + 1}/{len(plan)}] measure {vname(art, sub)} on "
                     f"{target.name}")
                runner = runner or get_runner(target)
                job = {**_job(settings, target, threads), "runtime": target.runtimes[art.format],
                       "path": "artifact", "task": task, "batch_axis": model.spec.batch_axis,
                       **({"delegate": sub} if sub else {})}
                try:
                    fill_row(row, runner.measure(job, {"data": data_file, "artifact": work / art.path}))
                except RunnerError as e:
                    row.update(status="run failed", reason=str(e))
                except KeyboardInterrupt:
                    row.update(status="run failed", reason="interrupted (Ctrl-C) while measuring")
                    emit(row)
                    raise
                judge(row, baseline, settings.collapse)
            emit(row)
    finally:
        if runner is not None:
            runner.close()
    return rows


def measure_baseline(
    model: LoadedModel, target: Target, settings: BenchSettings, threads: int, task: str,
    data_file: Path, reference: Path, row_target: str, step: Callable[[str], None],
) -> dict[str, Any]:
    """Measure fp32 PyTorch on this host; its outputs become the reference for every variant."""
    step(f"{model.name}: measure {BASELINE} (host)")
    torch_art = Artifact(BASELINE, "torch", "fp32", "torch", path=str(model.path),
                         size_bytes=model.path.stat().st_size, accepts_other_seq_len=True,
                         dynamic_batch=True)
    row = base_row(model, torch_art, target, task)
    row["target"] = row_target
    if row_target == "host":
        row["emulated"] = False
    local = LocalRunner(target)
    try:
        job = {**_job(settings, target, threads), "runtime": "torch", "path": "model",
               "task": task, "batch_axis": model.spec.batch_axis, "save_outputs": str(reference),
               "options": _torch_options(settings.load_options, model)}
        fill_row(row, local.measure(job, {"data": data_file, "model": model.path}))
        row["parity_max_abs_diff"], row["agreement"], row["accuracy_drop"] = 0.0, 1.0, 0.0
    except RunnerError as e:
        row.update(status="run failed", reason=str(e))
    finally:
        local.close()
    return row


def reuse_manifest(work: Path, model: LoadedModel, formats: list[str],
                   modes: list[str]) -> dict[str, Any] | None:
    """The existing manifest in ``work`` when it is for this exact model file and covers every
    requested variant with intact files; else None (export again)."""
    try:
        manifest, arts = load_manifest(work)
    except EdgeRNNError:
        return None
    if manifest.get("model", {}).get("sha256") != model.sha256:
        return None
    have = {(a.plugin, a.quantization) for a in arts}
    for plugin in formats:
        if (plugin, "fp32") not in have:
            return None
        if any((plugin, label_for(plugin, mode)) not in have for mode in modes):
            return None
    for a in arts:
        if a.status == "ok" and (not Path(a.path).exists() or sha256_file(Path(a.path)) != a.sha256):
            return None
    manifest["reused"] = True
    return manifest


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
        idx = _spread(len(cx), settings.calib_samples)
        return cx[idx], f"{settings.calib_path} ({len(idx)} evenly spaced samples)"
    idx = _spread(len(x), settings.calib_samples)
    return x[idx], (f"{len(idx)} evenly spaced samples of the evaluation data (no --calib given; "
                    "they are also evaluated, so int8 accuracy may be slightly optimistic)")


def _spread(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over n samples: time-ordered data is covered end to end
    (the first k samples of a season-ordered set calibrate worse, measured)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def _data_axis(model_axis: int, batch_axis: int) -> int:
    if model_axis == batch_axis:
        return 0
    return model_axis + 1 if model_axis < batch_axis else model_axis


def runtime_module(runtime: str) -> str:
    """The importable top-level module behind a runtime name ("litert" -> "ai_edge_litert")."""
    from edgernn.probe.runtimes import _MODULES

    return _MODULES.get(runtime, runtime).split(".")[0]


def host_version(module: str) -> str | None:
    from edgernn.probe.runtimes import version_of

    return version_of(module)


def _torch_options(load_options: dict[str, Any], model: LoadedModel) -> dict[str, Any]:
    opts = dict(load_options)
    opts["imports"] = list(opts.get("imports", ()))
    return opts
