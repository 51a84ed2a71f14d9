"""A bench row: made from an artifact, filled from a probe result, judged against fp32
PyTorch. Rows are the plain dicts the store, JSON and CSV files hold (``results.files``)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgernn.convert.artifact import Artifact
from edgernn.errors import RunnerError
from edgernn.model.loading import LoadedModel
from edgernn.probe.metrics import HIGHER_IS_BETTER, PRIMARY, degradation
from edgernn.runners import get_runner
from edgernn.runners.target import Target


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
    if "agreement_tol" in res:  # regression: agreement = share of values within this of fp32
        row["agreement_tol"] = res["agreement_tol"]
    fail_nonfinite(row, res)
    flag_few_samples(row)


NONFINITE = "non-finite output"
FEW_SAMPLES = 30  # below this many evaluation samples an accuracy says little


def fail_nonfinite(row: dict[str, Any], res: dict[str, Any]) -> None:
    """A variant whose outputs hold NaN/Inf (NaN weights, an overflow) fails: never ``ok``
    with whatever accuracy argmax made of them, never picked. Its numbers are cleared."""
    bad = int(res.get("nonfinite_outputs") or 0)
    numbers = [row.get("value"), row.get("parity_max_abs_diff"), row.get("agreement"),
               *(v for v in (row.get("metrics") or {}).values() if isinstance(v, (int, float)))]
    if not bad and all(v is None or math.isfinite(v) for v in numbers):
        return
    what = f"{bad} output value(s) are NaN or Inf" if bad else "its metrics are NaN or Inf"
    row.update(status="run failed", value=None, metrics=None, agreement=None,
               parity_max_abs_diff=None, per_sample=None, accuracy_drop=None,
               reason=f"{NONFINITE}: {what} (non-finite weights, or an overflow in this "
                      "runtime); check the model's weights")


def flag_few_samples(row: dict[str, Any]) -> None:
    """Say in the row's notes when its metric comes from too few samples to mean much."""
    n = row.get("eval_samples")
    if n is not None and n < FEW_SAMPLES and row.get("value") is not None:
        row["notes"] = [*row.get("notes", []), f"{row['metric']} from only {n} evaluation "
                        f"sample(s) (fewer than {FEW_SAMPLES}): too few to compare variants"]


def judge(row: dict[str, Any], baseline: dict[str, Any] | None, collapse: float) -> None:
    """Accuracy drop against the fp32 PyTorch row; mark a collapse (not for a ``--metric-fn``:
    a drop relative to a user's metric, e.g. an SNR gain near 0 dB, has no meaning; budgets
    in its units are ``select --max-drop``'s)."""
    if baseline is None or baseline.get("value") is None or row.get("value") is None:
        return
    metric = row["metric"]
    if baseline.get("metric", metric) != metric:  # judged by different metrics: no drop
        return
    higher = row.get("higher_is_better")
    higher = HIGHER_IS_BETTER[metric] if higher is None else higher
    drop = degradation(baseline["value"], row["value"], metric, higher)
    row["accuracy_drop"] = drop
    scale = abs(baseline["value"]) or 1.0
    row["relative_drop"] = drop / scale
    if row["status"] == "ok" and drop / scale > collapse and not row.get("metric_fn"):
        row["status"] = "accuracy collapsed"
        better = "higher" if higher else "lower"
        row["reason"] = (f"{metric} {row['value']:.4g} vs fp32 {baseline['value']:.4g} "
                         f"({better} is better): worse by {drop / scale:.0%} > {collapse:.0%}")
