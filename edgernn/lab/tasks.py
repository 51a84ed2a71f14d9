"""The two kinds of sweep task, as plain functions (Ray runs them; tests can call them).

``prepare``: on any CPU of the cluster, export (or reuse) a model's variants for a target
group into the content-addressed artifact directory and measure the PyTorch rows on that host.
``measure``: while holding one device's lease, measure ONE variant on that device.
Both write their rows to the results store as they go, so a task killed midway loses only
the row it was measuring.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgernn.convert.exporting import load_manifest
from edgernn.hashing import sha256_file
from edgernn.lab.sweep_file import ModelEntry
from edgernn.measure.bench import (
    BASELINE,
    BenchSettings,
    bench_model,
    bench_plan,
    check_formats,
    target_runtimes,
    vname,
)
from edgernn.runners.base import runner_class
from edgernn.runners.target import Target


@dataclass(frozen=True)
class Job:
    """What every task of one (model, target group) shares."""

    model: ModelEntry
    group: str  # target group name (rows are stored under it)
    data: Path
    work: Path  # content-addressed export directory of this model's variants
    db: str
    bench: dict[str, Any] = field(default_factory=dict)  # BenchSettings keyword arguments

    def settings(self, **kw: Any) -> BenchSettings:
        from edgernn.results.store import open_store

        return BenchSettings(**self.bench, load_options=dict(self.model.load),
                             store=open_store(self.db), **kw)


def export_key(model: ModelEntry, data: Path, target: Target, bench: dict[str, Any]) -> str:
    """Content hash naming a model's exports: the model file, how it is read, the data (the
    calibration fallback), the formats, quantizations and opt-ins asked for, and whether the
    group's CPU needs 7-bit int8 weights. Target groups asking for the same share one export."""
    key = {"model": sha256_file(model.path), "load": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in model.load.items()},
           "data": sha256_file(data),
           "formats": sorted(check_formats(target, bench.get("formats") or target.formats)),
           "modes": sorted(bench["modes"] if bench.get("modes") is not None else target.quantize),
           "opt_in": sorted(bench.get("opt_in") or ()), "max_drop": bench.get("max_drop"),
           "calib": sha256_file(bench["calib_path"]) if bench.get("calib_path") else None,
           "seven_bit_weights": target.seven_bit_weights()}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(job: Job, target: Target, after: Any = None) -> dict[str, Any]:
    """Export or reuse the variants and measure the PyTorch rows; returns the variant names a
    device of the group measures, those of them the store already has a row for (a resumed
    sweep), and the rows stored. ``after``: a task this one waits for (the previous prepare
    of the same export, which writes the same directory)."""
    settings = job.settings(only=frozenset(), row_notes=shared_host(target))
    rows: list[dict[str, Any]] = []
    try:
        bench_model(job.model.path, target, job.data, job.work, settings,
                    on_row=lambda r: _keep(rows, r))
        manifest, _arts = load_manifest(job.work / job.model.path.stem)
        plan = bench_plan(manifest, target, BenchSettings(**job.bench))
        stored = _stored(settings.store, rows, plan, job.group)
    finally:
        settings.store.close()
    return {"variants": [vname(a, d) for a, d in plan], "stored": stored,
            "rows": [_brief(r) for r in rows]}


def _stored(store: Any, rows: list[dict[str, Any]], plan: list[tuple[Any, str | None]],
            group: str) -> list[str]:
    """Variants with a reusable stored row for this group, found under the reuse key the
    PyTorch row carries (model, data, threads, settings hash): the driver hands them to a
    device in one task, which only confirms the device's runtime versions under its lease."""
    base = next((r for r in rows if r["variant"].endswith(f"/{BASELINE}")
                 and r.get("settings_sha256")), None)
    if base is None:
        return []
    model = base["variant"].rsplit("/", 1)[0]
    out = []
    for a, d in plan:
        # a variant that failed to export: the row that stored the same failure
        statuses = None if a.status == "ok" else (a.status,)
        if store.find(base["model_sha256"], f"{model}/{vname(a, d)}", group,
                      base["data_sha256"], base["requested_threads"], base["settings_sha256"],
                      statuses):
            out.append(vname(a, d))
    return out


def measure(job: Job, target: Target, variants: tuple[str, ...]) -> list[dict[str, Any]]:
    """Measure variants on the device ``target`` names (its lease is held by the caller): one
    new variant, or several with stored rows (reused once the device's runtimes match)."""
    with tempfile.TemporaryDirectory(prefix="edgernn-sweep-") as scratch:
        settings = job.settings(only=frozenset(variants), scratch=Path(scratch), peer=False,
                                installed=lambda: device_runtimes(target),
                                row_notes=shared_host(target))
        rows: list[dict[str, Any]] = []
        try:
            bench_model(job.model.path, target, job.data, job.work, settings,
                        on_row=lambda r: _keep(rows, r))
        finally:
            settings.store.close()
    names = {f"{job.model.path.stem}/{v}" for v in variants}
    return [_brief(r) for r in rows if r["variant"] in names]


_RUNTIMES: dict[str, tuple[float, dict[str, str | None]]] = {}
RUNTIMES_TTL_S = 600.0


def device_runtimes(target: Target) -> dict[str, str | None]:
    """The device's runtime versions, asked once per worker process and device (a board
    is not upgraded in the middle of a sweep; asking takes seconds over SSH)."""
    key = getattr(target, "device_id", "") or target.name
    now = time.monotonic()
    if key not in _RUNTIMES or now - _RUNTIMES[key][0] > RUNTIMES_TTL_S:
        _RUNTIMES[key] = (now, target_runtimes(target))
    return _RUNTIMES[key][1]


_EMPTY = ("runtime_version", "size_bytes", "latency_ms",
          "peak_mb", "peak_rss_mb", "value", "metrics", "accuracy_drop", "relative_drop",
          "agreement", "parity_max_abs_diff", "export_parity_max_abs_diff", "threads", "device",
          "accepts_other_seq_len", "calibration", "backend", "signature")


SHARED_HOST = ("measured in a sweep on the host that also ran the sweep's other tasks "
               "(conversions, other devices' work): latency may be inflated; bench it alone for "
               "this host's own numbers")


def shared_host(target: Target) -> tuple[str, ...]:
    """The note a sweep puts on rows of a local device: the host was not idle."""
    return (SHARED_HOST,) if runner_class(target.runner).ON_HOST else ()


def failed_row(job: Job, variant: str, device: str, reason: str,
               metric: str | None = None) -> dict[str, Any]:
    """The row a sweep stores when a task died without writing its own (worker or device
    gone): failed, never reused, so a re-run measures it again. Same keys as a bench row."""
    return dict.fromkeys(_EMPTY) | {
        "metric": metric, "emulated": None, "format": "", "quantization": "", "runtime": "",
        "model": job.model.path.stem, "model_sha256": sha256_file(job.model.path),
        "variant": f"{job.model.path.stem}/{variant}", "target": job.group, "device_id": device,
        "data_sha256": sha256_file(job.data), "requested_threads": job.bench.get("threads"),
        "status": "run failed", "reason": reason, "notes": [], "settings_sha256": None,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _keep(rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    if not any(r is row for r in rows):
        rows.append(row)


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its per-sample records (the store has them; the driver needs less)."""
    return {k: v for k, v in row.items() if k != "per_sample"}
