"""Run a sweep on Ray: conversions spread over the cluster's CPUs, measurements under device
leases (each device is a Ray custom resource of capacity 1, so no device runs two at once).

Without an address Ray starts on this machine with the devices' resources; with one, the
cluster's nodes must declare them (``ray start --resources '{"device:...": 1}'``).
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from edgernn.errors import EdgeRNNError
from edgernn.lab.progress import CONVERT, Progress
from edgernn.lab.sweep_file import SweepSpec
from edgernn.lab.tasks import Job, export_key, failed_row, measure, prepare
from edgernn.limits import memory_bytes
from edgernn.runners.base import runner_class
from edgernn.runners.inventory import Device, check_device, devices, ray_resource
from edgernn.runners.target import Target, load_target

DEVICE_STRIKES = 2  # a device failing this many measurements in a row leaves the rotation
_FAILED = ("run failed",)  # an export failure is the variant's, not the device's


@dataclass
class Group:
    """A target group and its boards, idle or leased."""

    target: Target
    devices: list[Device]
    idle: deque[Device] = field(default_factory=deque)
    # (job, variants): one new variant, or all of a job's variants with stored rows
    queue: deque[tuple[Job, tuple[str, ...]]] = field(default_factory=deque)
    struck: dict[str, list[tuple[Job, tuple[str, ...]]]] = field(default_factory=dict)
    retired: dict[str, str] = field(default_factory=dict)  # device id -> why it left


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep, carrying the rows finished before it."""

    def __init__(self, rows: list[dict[str, Any]]):
        super().__init__()
        self.rows = rows


@dataclass
class Outcome:
    rows: list[dict[str, Any]]
    failures: list[str]  # one line per variant whose task died (and was not redone)
    tasks: int
    seconds: float
    progress: Progress
    retired: dict[str, str]


def sweep_groups(spec: SweepSpec) -> list[Group]:
    """The spec's targets as groups of devices; one-line errors for templates and repeats."""
    groups: list[Group] = []
    for name in spec.targets:
        t = load_target(name)
        t.require_device()
        if any(g.target.name == t.name for g in groups):
            raise EdgeRNNError(f"sweep file {spec.path}: target {t.name} is listed twice")
        devs = devices(t)
        groups.append(Group(t, devs, deque(devs)))
    ids = [d.id for g in groups for d in g.devices]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise EdgeRNNError(f"device {dup[0]} belongs to two targets of the sweep")
    return groups


def bench_kwargs(spec: SweepSpec) -> dict[str, Any]:
    """BenchSettings keyword arguments from the sweep file's ``bench`` mapping."""
    b = dict(spec.bench)
    kw: dict[str, Any] = {"formats": spec.formats, "modes": spec.quantize,
                          "calib_path": spec.calib}
    names = {"runs": "min_runs", "min_seconds": "min_seconds", "warmup": "warmup",
             "trials": "trials", "threads": "threads", "eval_batch": "eval_batch",
             "collapse": "collapse", "step_ms": "step_ms", "max_drop": "max_drop"}
    for k, v in names.items():
        if k in b:
            kw[v] = b[k]
    kw["opt_in"] = frozenset(g for g, key in (("per-op", "per_op"), ("tune", "tune")) if b.get(key))
    return kw


def start_ray(address: str | None, resources: dict[str, float], cpus: int | None) -> bool:
    """Connect to a cluster (checking it has every device resource) or start one here;
    True when this call started it (and must stop it)."""
    try:
        import ray
    except ImportError:
        raise EdgeRNNError("edgernn sweep needs Ray: pip install 'edgernn[lab]'") from None
    opts: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **opts)
        except Exception as e:  # ConnectionError and Ray's own
            raise EdgeRNNError(f"cannot reach the Ray cluster at {address} "
                               f"({str(e).strip().splitlines()[0][:200]})") from None
        have = ray.cluster_resources()
        missing = sorted(r for r in resources if have.get(r, 0) < 1)
        if missing:
            ray.shutdown()
            decl = ", ".join(f'"{r}": 1' for r in missing)
            raise EdgeRNNError(f"the Ray cluster at {address} has no {', '.join(missing)}: start "
                               f"the node next to those devices with ray start --resources "
                               f"'{{{decl}}}'")
        return False
    ray.init(address="local", resources=resources, num_cpus=cpus or os.cpu_count(), include_dashboard=False,
             object_store_memory=256 * 2**20, **opts)
    return True


def check_memory_request(gb: float, have_bytes: float, where: str, path: Path) -> None:
    """Refuse a conversion memory request that no node can grant (Ray would queue the task
    for ever, silently)."""
    if gb * 2**30 > have_bytes:
        raise EdgeRNNError(f"sweep file {path}: 'convert_memory_gb' is {gb:g} but {where} has "
                           f"{have_bytes / 2**30:.1f} GB; no task could ever start (ask for at "
                           "most that much)")


def run_sweep(spec: SweepSpec, db: str, artifacts: Path, console: Console,
              address: str | None = None, cpus: int | None = None) -> Outcome:
    """Expand the sweep into tasks and run them; rows go to the store as they finish."""
    import ray

    groups = sweep_groups(spec)
    bench = bench_kwargs(spec)
    resources = {ray_resource(d.id): 1.0 for g in groups for d in g.devices}
    convert_gb = spec.convert_memory_gb or (3.0 if _any_tflite(groups, bench) else 1.0)
    if address is None:  # a Ray started here has this machine's memory
        check_memory_request(convert_gb, memory_bytes(), "this machine", spec.path)
    started_here = start_ray(address, resources, cpus)
    if address is not None:
        try:
            biggest = max(float(n.get("Resources", {}).get("memory", 0)) for n in ray.nodes())
            check_memory_request(convert_gb, biggest, f"the largest node of {address}", spec.path)
        except EdgeRNNError:
            ray.shutdown()
            raise
    prep = ray.remote(prepare)
    prep_opts = {"name": "edgernn_prepare", "num_cpus": 1, "max_retries": 0,
                 "memory": int(convert_gb * 2**30)}
    meas = ray.remote(measure)
    pending: dict[Any, tuple[str, Job, Group, Device | None, tuple[str, ...], float]] = {}
    rows: list[dict[str, Any]] = []
    failures: dict[tuple[Path, str, str], str] = {}  # (model, group, variant) -> why
    t0 = time.monotonic()
    progress = Progress(console)
    store = _store(db)
    metric: dict[tuple[Path, str], str | None] = {}  # each job's primary metric, from its PyTorch rows

    def dispatch() -> None:
        for g in groups:
            while g.idle and g.queue:
                d = g.idle.popleft()
                job, variants = g.queue.popleft()
                remote = not runner_class(d.target.runner).ON_HOST  # a board's task only waits on the board
                ref = meas.options(name="edgernn_measure", max_retries=0,
                                   num_cpus=0 if remote else 1,
                                   resources={ray_resource(d.id): 1}).remote(job, d.target,
                                                                             variants)
                pending[ref] = ("measure", job, g, d, variants, time.monotonic())
                progress.start(d.id, _label(job, variants))

    def give_up(g: Group) -> None:
        """No device of the group is left: its queued variants fail with the reason."""
        why = "no device of the group is left (" + "; ".join(
            f"{k}: {v}" for k, v in g.retired.items()) + ")"
        while g.queue:
            job, variants = g.queue.popleft()
            for variant in variants:
                row = failed_row(job, variant, "-", why, metric.get((job.model.path, job.group)))
                _store_row(store, row, rows)
                failures[(job.model.path, job.group, variant)] = \
                    f"{g.target.name}: {job.model.path.stem}/{variant}: {why}"
                progress.lanes[g.devices[0].id].failed += 1

    try:
        with progress:
            last: dict[str, Any] = {}
            # a local group's prepare holds this host's lease: let another group's prepare
            # make a shared export first, so the lease is held only for the PyTorch rows
            order = sorted(groups, key=lambda g: runner_class(g.target.runner).ON_HOST)
            for m in spec.models:
                for g in order:
                    key = export_key(m, spec.data, g.target, bench)
                    job = Job(m, g.target.name, spec.data, artifacts / key, db, bench)
                    # the same export for two groups: the second waits (same directory)
                    # PyTorch rows of a local group are measured on that device: hold its lease
                    lease = ({"resources": {ray_resource(g.devices[0].id): 1}}
                             if runner_class(g.target.runner).ON_HOST else {})
                    ref = prep.options(**prep_opts, **lease).remote(job, g.devices[0].target,
                                                                 last.get(key))
                    last[key] = ref
                    pending[ref] = ("prepare", job, g, None, (), time.monotonic())
                    progress.start(CONVERT, f"{m.path.stem} for {g.target.name}")
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                progress.refresh()
                for ref in ready:
                    kind, job, g, d, variants, ts = pending.pop(ref)
                    took = time.monotonic() - ts
                    what = _label(job, variants) if variants else \
                        f"{job.model.path.stem} for {g.target.name}"
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        why = _reason(e)
                        if kind == "prepare":
                            failures[(job.model.path, job.group, "export")] = f"{what}: {why}"
                            progress.finish(CONVERT, what, f"FAILED: {why}", took, failed=True)
                            _store_row(store, failed_row(job, "export", "-", why)
                                       | {"status": "export failed"}, rows)
                            continue
                        for v in variants:
                            failures[(job.model.path, job.group, v)] = \
                                f"{job.model.path.stem}/{v}: {why}"
                            _store_row(store, failed_row(job, v, d.id, why,
                                                         metric.get((job.model.path, job.group))), rows)
                        progress.finish(d.id, what, f"FAILED: {why}", took, failed=True,
                                        count=len(variants))
                        _strike(g, d, why, (job, variants))
                        continue
                    if kind == "prepare":
                        rows += result["rows"]
                        metric[(job.model.path, job.group)] = next(
                            (r.get("metric") for r in result["rows"]), None)
                        stored = tuple(result["stored"])
                        if stored:  # a resumed sweep: one task confirms them all on a device
                            g.queue.append((job, stored))
                        g.queue.extend((job, (v,)) for v in result["variants"] if v not in stored)
                        progress.finish(CONVERT, what, f"{len(result['variants'])} variant(s)"
                                        + (f", {len(stored)} stored" if stored else ""), took)
                    else:
                        rows += result
                        for v in variants:
                            failures.pop((job.model.path, job.group, v), None)  # redone
                        bad = next((r for r in result if r["status"] in _FAILED), None)
                        reused = sum(1 for r in result if r.get("reused"))
                        progress.finish(d.id, what, _outcome(result, len(variants)), took,
                                        reused=reused == len(variants) > 0,
                                        failed=bad is not None, count=len(variants))
                        if bad is not None:
                            _strike(g, d, bad.get("reason") or bad["status"], (job, variants))
                        else:
                            g.struck[d.id] = []
                            g.idle.append(d)
                    if all(dev.id in g.retired for dev in g.devices):
                        give_up(g)
                _rebalance_lanes(progress, groups)
                dispatch()
    except KeyboardInterrupt:
        # no ray.cancel: in Ray 2.60 a cancel racing with the task's reply kills this driver
        # ("Tried to complete task that was not pending", ray-project/ray#54260, seen in CI).
        # The running tasks end with the driver (ray.shutdown stops a cluster started here;
        # a cluster stops the workers of a job whose driver left); they stored no row, so a
        # re-run measures them.
        running = sum(1 for k in pending.values() if k[0] == "measure")
        console.print(f"sweep stopped: {running} running measurement(s) abandoned (not "
                      "stored); a re-run measures them", highlight=False)
        raise SweepInterrupted(rows) from None
    finally:
        store.close()
        if started_here:
            ray.shutdown()
    retired = {k: v for g in groups for k, v in g.retired.items()}
    return Outcome(rows, list(failures.values()), progress.total(), time.monotonic() - t0,
                   progress, retired)


def _strike(g: Group, d: Device, why: str, task: tuple[Job, tuple[str, ...]]) -> None:
    """Count a failed measurement. After DEVICE_STRIKES in a row the device is asked for its
    facts: unreachable, it leaves the rotation and the variants that failed on it go back to
    the group's queue (another board measures them); reachable (the variants themselves fail
    on it), it stays."""
    g.struck.setdefault(d.id, []).append(task)
    if len(g.struck[d.id]) >= DEVICE_STRIKES:
        check = check_device(d)
        if check.failed:
            g.retired[d.id] = check.status.splitlines()[0][:200]
            g.queue.extendleft(reversed(g.struck.pop(d.id)))
            return
        g.struck[d.id] = []
    g.idle.append(d)


def _label(job: Job, variants: tuple[str, ...]) -> str:
    """What a measure task does, for the progress view."""
    if len(variants) == 1:
        return f"{job.model.path.stem}/{variants[0]}"
    return f"{job.model.path.stem}: {len(variants)} stored variants"


def _outcome(rows: list[dict[str, Any]], asked: int) -> str:
    """A finished measure task in a few words: one row's status and p50, or a batch's counts."""
    if asked > 1:
        reused = sum(1 for r in rows if r.get("reused"))
        return f"{reused} reused, {len(rows) - reused} measured again" + (
            f", {asked - len(rows)} without a row" if len(rows) < asked else "")
    if not rows:
        return "no row"
    row = rows[0]
    p50 = (row.get("latency_ms") or {}).get("p50")
    return row["status"] + (f", p50 {p50:.3f} ms" if p50 else "") + (
        " (reused)" if row.get("reused") else "")


def _rebalance_lanes(progress: Progress, groups: list[Group]) -> None:
    """Queued counts shown per device: a group's queued variants split over its devices."""
    for g in groups:
        live = [d for d in g.devices if d.id not in g.retired] or g.devices[:1]
        queued = sum(len(vs) for _, vs in g.queue)
        for i, d in enumerate(g.devices):
            share = queued // len(live) + (1 if i < queued % len(live) else 0)
            progress.lanes[d.id].queued = share if d in live else 0


def _reason(e: BaseException) -> str:
    """One line for a task that died: the task's own error, or what Ray saw (worker killed,
    node gone, cancelled, out of memory)."""
    import ray

    if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None:
        cause = e.cause
        text = str(cause).strip().splitlines()
        return f"{type(cause).__name__}: {text[0][:200]}" if text else type(cause).__name__
    name = type(e).__name__
    text = str(e).strip().splitlines()
    first = next((t for t in text if t.strip()), "")
    return f"{name}: {first[:200]}" if first else name


def _any_tflite(groups: list[Group], bench: dict[str, Any]) -> bool:
    fmts = bench.get("formats") or [f for g in groups for f in g.target.formats]
    return any(str(f).startswith("tflite") for f in fmts)


def _store(db: str) -> Any:
    from edgernn.results.store import open_store

    return open_store(db)


def _store_row(store: Any, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    store.add(row)
    rows.append(row)
