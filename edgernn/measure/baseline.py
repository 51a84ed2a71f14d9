"""PyTorch on this host: the fp32 baseline every variant is judged against (its outputs are
every variant's reference) and the ``torch-int8-dynamic`` peer row."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgernn.convert.artifact import Artifact
from edgernn.convert.quantize.torch_dynamic import torch_int8_bytes, torch_int8_reason
from edgernn.errors import RunnerError
from edgernn.measure.pending import Pending
from edgernn.measure.rows import base_row, fill_row, timed_use
from edgernn.measure.rows import judge as judge_row
from edgernn.measure.settings import BenchSettings, probe_job
from edgernn.model.loading import LoadedModel
from edgernn.runners.local import LocalRunner
from edgernn.runners.target import Target

BASELINE = "torch-fp32"
TORCH_INT8 = "torch-int8-dynamic"


def torch_peer(model: LoadedModel, target: Target, settings: BenchSettings, threads: int,
               described: dict[str, Any], data_file: Path, modes: list[str],
               baseline: dict[str, Any] | None, cached: Callable, emit: Callable,
               step: Callable[[str], None], where: str, judge: Any = None) -> Pending | None:
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
                                where, step, variant=TORCH_INT8, judge=judge)
    judge_row(row, baseline, settings.collapse)  # ``judge`` here is the user's metric
    if row["status"] in ("ok", "accuracy collapsed") and settings.trials > 1:
        row["provisional"] = True
        p = Pending(row, job, {"data": data_file, "model": model.path}, local=True)
        p.store_id = emit(row)
        return p
    emit(row)
    return None


def measure_baseline(
    model: LoadedModel, target: Target, settings: BenchSettings, threads: int,
    described: dict[str, Any],
    data_file: Path, reference: Path | None, row_target: str, step: Callable[[str], None],
    variant: str = BASELINE, judge: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure PyTorch on this host: fp32, whose outputs (saved to ``reference``) are every
    variant's reference, or its peer ``torch-int8-dynamic`` (torch.ao dynamic quantization of
    the eager module); ``judge`` (``metrics.user.HostJudge``): the user's metric judges it.
    Returns the row and the job (further timing trials reuse it)."""
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
    job = {**probe_job(settings, target, threads), "runtime": "torch", "path": "model",
           **described, "options": options}
    partial = reference.with_name(f"{reference.stem}.{os.getpid()}.partial.npy") if reference else None
    if partial is not None:
        job["save_outputs"] = str(partial)  # renamed when whole: other processes may read it
    try:
        res = timed_use(row, local, job, {"data": data_file, "model": model.path})
        fill_row(row, res)
        if judge is not None:
            judge.apply(row, res)
        if partial is not None and partial.exists():
            os.replace(partial, reference)
        if not int8:
            row["parity_max_abs_diff"], row["agreement"], row["accuracy_drop"] = 0.0, 1.0, 0.0
    except RunnerError as e:
        row.update(status="run failed", reason=str(e))
    finally:
        local.close()
    return row, job


def host_version(module: str) -> str | None:
    from edgernn.probe.runtimes import version_of

    return version_of(module)


def _torch_options(load_options: dict[str, Any], model: LoadedModel) -> dict[str, Any]:
    opts = dict(load_options)
    opts["imports"] = list(opts.get("imports", ()))
    return opts
