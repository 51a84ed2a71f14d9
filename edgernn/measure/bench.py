"""bench: export every variant, measure each on a target, compare against fp32 PyTorch."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.calibration import SAMPLES, calibration_inputs
from edgernn.convert.exporting import export_model, load_manifest, opt_in_groups
from edgernn.convert.formats import expand_formats, get_format
from edgernn.convert.quantize import NOT_RELEVANT, OPT_IN, labels_for, opt_in_labels, quantizers_for
from edgernn.convert.quantize.base import CALIBRATED
from edgernn.convert.quantize.torch_dynamic import torch_int8_bytes, torch_int8_reason
from edgernn.data.evalfile import check_targets, load_eval
from edgernn.errors import EdgeRNNError, RunnerError
from edgernn.hashing import array_sha256
from edgernn.measure.inputs import (
    fit_data,
    initial_states,
    model_job,
    per_step,
    reference_scores,
    score_threshold,
)
from edgernn.measure.trials import TRIALS, combine, mark_unstable, trial_budget
from edgernn.model.loading import LoadedModel, load_model, sha256_file
from edgernn.probe.metrics import HIGHER_IS_BETTER, PRIMARY, degradation
from edgernn.runners import get_runner, sub_variants
from edgernn.runners.local import LocalRunner
from edgernn.runners.target import Target

BASELINE = "torch-fp32"
PARITY_SAMPLES = 8  # evaluation samples the export parity check runs on


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
    calib_samples: int = SAMPLES
    step_ms: float | None = None  # stream time one step covers: rows get rtf = p50 / step_ms
    max_drop: float | None = None  # accuracy-aware int8: the largest accepted metric drop
    opt_in: frozenset[str] = frozenset()  # other opt-in variant groups: "per-op", "tune"
    store: Any = None  # edgernn.results.store.Store: rows are saved there and reused unless force
    force: bool = False
    trials: int = TRIALS  # timing trials per variant, separate processes, round-robin
    only: frozenset[str] | None = None  # measure only these variants (a sweep's one-variant task)
    scratch: Path | None = None  # where the probe's data file goes (default: the model's work dir)
    peer: bool = True  # measure the torch-int8-dynamic peer row (a sweep's prepare task does)
    # the target's runtime versions when the caller knows them, or how to ask only when a
    # stored row needs them (a sweep asks each device once)
    installed: dict[str, str | None] | Callable[[], dict[str, str | None]] | None = None
    row_notes: tuple[str, ...] = ()  # said on every row measured here (e.g. by a sweep)


def settings_key(settings: BenchSettings, target: Target, threads: int,
                 calib_sha: str | None, signature: dict[str, Any] | None = None) -> str:
    """Hash of every setting that changes a measured number: a stored row is reused only
    when all of them match (the runtime version is checked against the target separately)."""
    key = {"runs": settings.min_runs, "min_seconds": settings.min_seconds,
           "warmup": settings.warmup, "max_runs": settings.max_runs, "threads": threads,
           "cpus": target.cpus, "eval_batch": settings.eval_batch, "calib": calib_sha,
           "calib_samples": settings.calib_samples, "collapse": settings.collapse,
           "trials": settings.trials, "step_ms": settings.step_ms, "max_drop": settings.max_drop,
           # how the file was read: other --input/--state pairs make another model
           "signature": signature}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _job(settings: BenchSettings, target: Target, threads: int) -> dict[str, Any]:
    """The probe job of one timing trial (the timing budget is split across the trials)."""
    runs, seconds = trial_budget(settings.min_runs, settings.min_seconds, settings.trials)
    return {
        "threads": threads, "cpus": target.cpus, "warmup": settings.warmup,
        "min_runs": runs, "max_runs": settings.max_runs,
        "min_seconds": seconds, "eval_batch": settings.eval_batch, "data": "data",
        "step_ms": settings.step_ms,
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
        "backend": art.backend, "signature": model.sig.describe(),
        "device_id": device_id(target),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    } | ({"notes": [*art.notes, f"calibrated on {art.calibration}"]} if art.calibration else {})


def device_id(target: Target) -> str:
    """The device a row ran on: one board of a target group, else the target itself."""
    return getattr(target, "device_id", None) or target.name


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def timed_use(row: dict[str, Any], runner: Any, job: dict[str, Any],
              files: dict[str, Path]) -> dict[str, Any]:
    """Run one measurement and append the [start, end] of its use of the device to
    ``row["device_use"]`` (a sweep proves from these that no device ran two at once)."""
    start = now_iso()
    try:
        return runner.measure(job, files)
    finally:
        row.setdefault("device_use", []).append([start, now_iso()])


def target_runtimes(target: Target) -> dict[str, str | None]:
    """Runtime module -> version installed on the target ({} when it cannot be asked)."""
    try:
        probe = get_runner(target)
        try:
            return probe.facts().get("runtimes") or {}
        finally:
            probe.close()
    except RunnerError:
        return {}


def latency_of(res: dict[str, Any]) -> dict[str, Any]:
    """A probe result's latency summary with its first-call and load times."""
    return {**res["latency_ms"], "first": res["first_ms"], "load": res["load_ms"]}


def set_rtf(row: dict[str, Any], step_ms: float | None) -> None:
    """Real-time factor of a step: p50 (and p99) latency over the stream time one step covers
    (below 1 keeps up with the stream)."""
    lat = row.get("latency_ms")
    if step_ms and lat and lat.get("p50") is not None:
        row["step_ms"] = step_ms
        row["rtf"] = lat["p50"] / step_ms
        row["rtf_p99"] = lat["p99"] / step_ms if lat.get("p99") is not None else None


def fill_row(row: dict[str, Any], res: dict[str, Any]) -> None:
    lat = latency_of(res)
    row.update(
        runtime=res["runtime"], runtime_version=res["runtime_version"], latency_ms=lat,
        peak_mb=res.get("peak_delta_mb", res.get("peak_rss_mb")),
        peak_rss_mb=res.get("peak_rss_mb"), metrics=res["metrics"],
        value=res["metrics"][row["metric"]], threads=res["threads"], device=res["device"],
        eval_samples=res.get("eval_samples"),
    )
    if res.get("per_sample"):
        row["per_sample"] = res["per_sample"]
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
    x = fit_data(model, data)
    steps = per_step(model, data.y, task)
    check_targets(data, model.spec, task, model_classes(model, x, task, steps))
    threshold, threshold_note = score_threshold(model, x, task, steps)
    described = model_job(model, task, threshold)
    inits = initial_states(model, Path(data_path), len(x))
    work = out_dir / model.name
    work.mkdir(parents=True, exist_ok=True)
    formats = check_formats(target, settings.formats or target.formats)
    modes = settings.modes if settings.modes is not None else target.quantize
    threads = settings.threads or target.threads
    store = settings.store
    rows: list[dict[str, Any]] = []

    calib, calib_source = calibration_inputs(model.spec, settings.calib_path, x,
                                             settings.calib_samples)
    calib_sha = array_sha256(calib)
    trials = settings.trials
    settings_sha = settings_key(settings, target, threads, calib_sha, model.sig.to_dict())

    def cached(variant: str, statuses: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        if store is None or settings.force:
            return None
        hit = store.find(model.sha256, f"{model.name}/{variant}", row_target(variant),
                         data_sha, threads, settings_sha, statuses)
        if hit:
            hit["reused"] = True
        return hit

    def row_target(variant: str) -> str:
        # PyTorch runs on this host; it is the target itself only for a local target
        on_host = variant in (BASELINE, TORCH_INT8)
        return target.name if not on_host or target.runner == "local" else "host"

    def emit(row: dict[str, Any]) -> int | None:
        """Store and hand on a row as soon as it is measured (an error later loses nothing);
        a row waiting for more timing trials is provisional and never reused from the store.
        Returns the row's id in the store, if stored."""
        row.setdefault("data_sha256", data_sha)
        row.setdefault("requested_threads", threads)
        for note in (threshold_note, *settings.row_notes):
            if note and note not in row.get("notes", []) and not row.get("reused"):
                row["notes"] = [*row.get("notes", []), note]
        set_rtf(row, settings.step_ms)
        row["settings_sha256"] = None if row.get("provisional") else settings_sha
        rid = store.add(row) if store is not None and not row.get("reused") else None
        rows.append(row)
        on_row(row)
        return rid

    def update(p: _Pending, interrupted: bool) -> None:
        """Fold the trials into a provisional row, then rewrite it in the store and files."""
        if interrupted and len(p.latencies) < trials:
            p.failures.append(f"interrupted after {max(1, len(p.latencies))} of {trials} trials")
        _finish_trials(p)
        row = p.row
        set_rtf(row, settings.step_ms)
        complete = not p.failures and len(p.latencies) == trials
        row.pop("provisional", None)
        row["settings_sha256"] = settings_sha if complete else None  # incomplete: not reused
        if store is not None and p.store_id is not None:
            store.update(p.store_id, row)
        on_row(row)

    manifest = None if settings.force else reuse_manifest(work, model, formats, modes, calib_sha,
                                                          settings.max_drop, settings.opt_in)
    if manifest is None:
        manifest = export_model(model, work, formats, modes, target.name, on_step=step,
                                calib=calib, calib_source=calib_source,
                                parity_inputs=x[:PARITY_SAMPLES],
                                budget=accuracy_budget(model, x, data.y, task, settings),
                                opt_in=settings.opt_in)
    plan = bench_plan(manifest, target, settings)
    hits = {vname(a, d): cached(vname(a, d)) for a, d in plan}
    if manifest.get("reused"):  # the same export failed the same way: its row stands
        hits |= {vname(a, d): cached(vname(a, d), (a.status,)) for a, d in plan
                 if a.status not in ("ok", NOT_RELEVANT)}
    if any(h and h.get("runtime_version") for h in hits.values()):
        # a stored row counts only if the target still has the runtime version that made it
        installed = settings.installed if settings.installed is not None else \
            target_runtimes(target)
        if callable(installed):
            installed = installed()
        for variant, hit in hits.items():
            if hit and hit.get("runtime_version") and \
                    installed.get(runtime_module(hit["runtime"])) != hit["runtime_version"]:
                hits[variant] = None
    data_file = (settings.scratch or work) / "probe-data.npz"
    reference = work / f"reference-{model.sha256[:12]}-{data_sha[:12]}.npy"

    # fp32 PyTorch baseline, always on this host (devices do not run PyTorch)
    baseline = cached(BASELINE)
    if baseline and baseline.get("runtime_version") != host_version("torch"):
        baseline = None
    # a sweep's tasks (``only``) share the reference: make it whenever the file is missing
    need_reference = settings.only is not None or any(
        hits[vname(a, d)] is None and a.status == "ok" for a, d in plan)
    baseline_pending = None
    if baseline is None or (need_reference and not reference.exists()):
        np.savez(data_file, x=x, y=data.y, **inits)
        baseline, job = measure_baseline(model, target, settings, threads, described, data_file,
                                         reference, row_target(BASELINE), step)
        if baseline["status"] == "ok" and trials > 1:
            baseline["provisional"] = True
            baseline_pending = _Pending(baseline, job, {"data": data_file, "model": model.path},
                                        local=True)
    rid = emit(baseline)
    if baseline_pending is not None:
        baseline_pending.store_id = rid
    if baseline["status"] != "ok":
        baseline = None
    if need_reference and reference.exists():
        np.savez(data_file, x=x, y=data.y, reference=np.load(reference), **inits)
    peer_pending = torch_peer(model, target, settings, threads, described, data_file, modes,
                              baseline, cached, emit, step, row_target(TORCH_INT8))

    runner = None
    pending: list[_Pending] = []  # rows measured once that get more timing trials
    pending += [p for p in (baseline_pending, peer_pending) if p is not None]
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
                    and not model.sig.is_streaming
                    and data_seq != model.spec.shape[seq_axis]):
                row.update(status="skipped", reason=(
                    f"artifact is fixed at sequence length {model.spec.shape[seq_axis]}; the "
                    f"data has {data_seq}"))
            elif art.status == "ok":
                step(f"{model.name}: [{i + 1}/{len(plan)}] measure {vname(art, sub)} on "
                     f"{target.name}" + (f" (trial 1/{trials})" if trials > 1 else ""))
                runner = runner or get_runner(target)
                job = {**_job(settings, target, threads), "runtime": target.runtimes[art.format],
                       "path": "artifact", **described, **({"delegate": sub} if sub else {})}
                files = {"data": data_file, "artifact": work / art.path}
                try:
                    fill_row(row, timed_use(row, runner, job, files))
                except RunnerError as e:
                    row.update(status="run failed", reason=str(e))
                except KeyboardInterrupt:
                    row.update(status="run failed", reason="interrupted (Ctrl-C) while measuring")
                    emit(row)
                    raise
                judge(row, baseline, settings.collapse)
                if row["status"] in ("ok", "accuracy collapsed") and trials > 1:
                    row["provisional"] = True
                    pending.append(_Pending(row, job, files, local=False))
                    pending[-1].store_id = emit(row)
                    continue
            emit(row)
        if pending:
            runner = runner or get_runner(target)
            more_trials(pending, trials, runner, target, step)
    except BaseException:
        for p in pending:
            update(p, interrupted=True)
        raise
    finally:
        if runner is not None:
            runner.close()
    for p in pending:
        update(p, interrupted=False)
    return rows


def torch_peer(model: LoadedModel, target: Target, settings: BenchSettings, threads: int,
               described: dict[str, Any], data_file: Path, modes: list[str],
               baseline: dict[str, Any] | None, cached: Callable, emit: Callable,
               step: Callable[[str], None], where: str) -> _Pending | None:
    """The ``torch-int8-dynamic`` peer row (with ``--quantize dynamic``), judged against fp32
    PyTorch; a pending record when it waits for more timing trials."""
    if "dynamic" not in modes or not settings.peer:
        return None
    hit = cached(TORCH_INT8)
    if hit and (hit["status"] == "skipped" or hit.get("runtime_version") == host_version("torch")):
        emit(hit)
        return None
    why = torch_int8_reason(model)
    if why:
        art = Artifact(TORCH_INT8, "torch", "int8-dynamic", "torch", status="skipped", error=why)
        row = base_row(model, art, target, described["task"])
        row["target"] = where
        emit(row)
        return None
    row, job = measure_baseline(model, target, settings, threads, described, data_file, None,
                                where, step, variant=TORCH_INT8)
    judge(row, baseline, settings.collapse)
    if row["status"] in ("ok", "accuracy collapsed") and settings.trials > 1:
        row["provisional"] = True
        p = _Pending(row, job, {"data": data_file, "model": model.path}, local=True)
        p.store_id = emit(row)
        return p
    emit(row)
    return None


@dataclass
class _Pending:
    """A row measured in trial 1 that waits for its further timing trials."""

    row: dict[str, Any]
    job: dict[str, Any]
    files: dict[str, Path]
    local: bool  # measured on this host (the PyTorch baseline) rather than on the target
    store_id: int | None = None  # its row in the results store, rewritten after the trials
    latencies: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def more_trials(pending: list[_Pending], trials: int, runner: Any, target: Target,
                step: Callable[[str], None]) -> None:
    """Trials 2..N, round-robin over the pending rows so machine drift hits every variant
    alike; each trial is a fresh process that only times (the first one evaluated)."""
    for p in pending:
        p.latencies = [p.row["latency_ms"]]
    local = None
    try:
        for t in range(2, trials + 1):
            for p in pending:
                step(f"{p.row['variant']}: timing trial {t}/{trials}")
                job = {**p.job, "evaluate": False}
                job.pop("save_outputs", None)
                try:
                    if p.local:
                        local = local or LocalRunner(target)
                        res = local.measure(job, p.files)
                    else:
                        res = timed_use(p.row, runner, job, p.files)
                    p.latencies.append(latency_of(res))
                except RunnerError as e:
                    p.failures.append(f"trial {t}: {e}")
    finally:
        if local is not None:
            local.close()


def _finish_trials(p: _Pending) -> None:
    """Fold the trials into the row's latency (median of trial medians, spread)."""
    first = p.row["latency_ms"]
    if not first:
        return
    # trial 1's summary comes first, so first-call and load times are trial 1's
    p.row["latency_ms"] = combine(p.latencies or [first])
    if p.failures:
        p.row["notes"] = [*p.row.get("notes", []), *(f"timing {f}" for f in p.failures)]
    mark_unstable(p.row)


def model_classes(model: LoadedModel, x: np.ndarray, task: str,
                  steps: int | None = None) -> int | None:
    """Classes of a classifier, from one forward pass when its file does not say."""
    if task != "classify" or model.spec.num_classes:
        return None
    try:
        width = reference_scores(model, x, samples=1, steps=steps).shape[1]
        return 2 if width == 1 else width
    except Exception as e:
        raise EdgeRNNError(f"{model.path}: the model does not run on the evaluation data "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def measure_baseline(
    model: LoadedModel, target: Target, settings: BenchSettings, threads: int,
    described: dict[str, Any],
    data_file: Path, reference: Path | None, row_target: str, step: Callable[[str], None],
    variant: str = BASELINE,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure PyTorch on this host: fp32, whose outputs (saved to ``reference``) are every
    variant's reference, or its peer ``torch-int8-dynamic`` (torch.ao dynamic quantization of
    the eager module). Returns the row and the job (further timing trials reuse it)."""
    step(f"{model.name}: measure {variant} (host)")
    int8 = variant == TORCH_INT8
    size = torch_int8_bytes(model) if int8 else model.path.stat().st_size
    torch_art = Artifact(variant, "torch", "int8-dynamic" if int8 else "fp32", "torch",
                         path=str(model.path), size_bytes=size, accepts_other_seq_len=True,
                         dynamic_batch=True)
    if int8:
        torch_art.backend = "torch.ao.quantization.quantize_dynamic (qint8: LSTM, GRU, Linear)"
        torch_art.notes = ["PyTorch's own dynamic int8 (what staying in PyTorch gives); size: "
                           "the quantized module's saved state_dict"]
    row = base_row(model, torch_art, target, described["task"])
    row["target"] = row_target
    if row_target == "host":
        row["emulated"] = False
        row["device_id"] = "host"
    local = LocalRunner(target)
    options = _torch_options(settings.load_options, model)
    if int8:
        options["int8_dynamic"] = True
    job = {**_job(settings, target, threads), "runtime": "torch", "path": "model",
           **described, "options": options}
    partial = reference.with_name(f"{reference.stem}.{os.getpid()}.partial.npy") if reference else None
    if partial is not None:
        job["save_outputs"] = str(partial)  # renamed when whole: other processes may read it
    try:
        fill_row(row, timed_use(row, local, job, {"data": data_file, "model": model.path}))
        if partial is not None and partial.exists():
            os.replace(partial, reference)
        if not int8:
            row["parity_max_abs_diff"], row["agreement"], row["accuracy_drop"] = 0.0, 1.0, 0.0
    except RunnerError as e:
        row.update(status="run failed", reason=str(e))
    finally:
        local.close()
    return row, job


TORCH_INT8 = "torch-int8-dynamic"


def accuracy_budget(model: LoadedModel, x: np.ndarray, y: np.ndarray, task: str,
                    settings: BenchSettings) -> Any:
    """The ``--max-drop`` budget, measured on up to ``calib_samples`` evaluation samples spread
    over the data, with their labels; None without ``--max-drop`` or for step models."""
    if settings.max_drop is None or model.sig.is_streaming:
        return None
    from edgernn.convert.quantize.accuracy_budget import AccuracyBudget

    idx = np.unique(np.linspace(0, len(x) - 1, min(len(x), settings.calib_samples)).astype(int))
    return AccuracyBudget(settings.max_drop, x[idx], y[idx], task, model.spec.batch_axis,
                          "evaluation samples")


def bench_plan(manifest: dict[str, Any], target: Target,
               settings: BenchSettings) -> list[tuple[Artifact, str | None]]:
    """(artifact, sub-variant) pairs a bench measures from an export manifest: not the
    variants about an op the graph lacks, nor a reused manifest's other opt-ins; with
    ``settings.only``, just those variants."""
    not_asked = opt_in_labels(frozenset(OPT_IN) - opt_in_groups(settings.opt_in,
                                                                 settings.max_drop is not None))
    arts = [Artifact.from_dict(a) for a in manifest["artifacts"]
            if a.get("status") != NOT_RELEVANT  # a variant about an op the graph lacks
            and a.get("quantization") not in not_asked]  # a reused manifest's other opt-ins
    subs = sub_variants(target)
    plan = [(a, d) for a in arts for d in (subs if a.status == "ok" else [None])]
    if settings.only is not None:
        plan = [(a, d) for a, d in plan if vname(a, d) in settings.only]
    return plan


def vname(art: Artifact, sub: str | None) -> str:
    """A variant's name on a target: the artifact's, with the runner's sub-variant."""
    return art.variant + (f"@{sub}" if sub else "")


def reuse_manifest(work: Path, model: LoadedModel, formats: list[str],
                   modes: list[str], calib_sha: str | None = None,
                   max_drop: float | None = None,
                   opt_in: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The existing manifest in ``work`` when it is for this exact model file, was calibrated
    on the same inputs and covers every requested variant with intact files; else None."""
    try:
        manifest, arts = load_manifest(work)
    except EdgeRNNError:
        return None
    if manifest.get("model", {}).get("sha256") != model.sha256:
        return None
    if manifest["model"].get("signature") != model.sig.to_dict():
        return None  # the same file read with other --input/--state
    if max_drop is not None and manifest.get("max_drop") != max_drop:
        return None
    if any(m in CALIBRATED for m in modes) and manifest.get("calibration_sha256") != calib_sha:
        return None
    have = {(a.plugin, a.quantization) for a in arts}
    for plugin in formats:
        if (plugin, "fp32") not in have:
            return None
        groups = opt_in_groups(opt_in, max_drop is not None)
        wanted = [q.label for q in quantizers_for(plugin, modes, groups)]
        if any((plugin, label) not in have for label in wanted) or \
                any((plugin, m) not in have for m in modes if labels_for(plugin, m) == [m]):
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
