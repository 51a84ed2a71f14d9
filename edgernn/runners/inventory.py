"""Devices: a target file names one device or a GROUP of identical boards; this expands a
target into its devices and checks every device of the inventory at once.

Group keys of a target file (one of them):

- ``devices: [{id: pi-a, port: 22022}, {id: pi-b, port: 22023}]``: runner-key overrides (and
  ``cpus``) per device, each with an optional ``id``;
- ``hosts: [10.0.0.3, 10.0.0.4]`` (ssh) or ``serials: [emulator-5554, ...]`` (adb);
- ``count: N`` (local runner): N measurement slots on this host, slot i pinned to
  ``[cpus[i]]`` when ``cpus`` lists at least N ids.

Each device's Target is a copy of the group's with its overrides applied; it keeps the group's
``name`` (rows are stored per group) and carries ``device_id``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgernn.errors import EdgeRNNError
from edgernn.runners.base import runner_class
from edgernn.runners.target import Device, Target, default_id, devices, list_targets, load_target

__all__ = ["Device", "default_id", "devices"]


# Ray 2.60 (tried with ray.init(resources=...) and a task needing the resource): ':' '@' '.'
# '#' '/' '%' and other printable ASCII work; ',' stops the raylet from starting, non-ASCII
# fails to encode, and a name containing "_group_" (Ray's placement-group resource naming)
# kills the raylet. So keep [A-Za-z0-9.:@#/+=~-] and write every other character, '_' and
# '%' included, as %XX: distinct ids stay distinct resources.
_RAY_SAFE = re.compile(r"[A-Za-z0-9.:@#/+=~-]")


def ray_resource(device_id: str) -> str:
    """The Ray custom resource that stands for device ``device_id``: ``device:<id>`` with
    characters outside ``[A-Za-z0-9.:@#/+=~-]`` written as ``%XX`` (UTF-8 bytes)."""
    return "device:" + "".join(
        c if _RAY_SAFE.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in device_id)


# -- the inventory ----------------------------------------------------------------------------
@dataclass
class Entry:
    """A target file of the inventory: its devices, or why it has none."""

    name: str
    path: Path
    target: Target | None = None
    devices: list[Device] = field(default_factory=list)
    error: str = ""  # the file is invalid
    no_device: str = ""  # a template: the setup hint


def _entry(name: str, path: Path) -> Entry:
    try:
        t = load_target(str(path))
    except EdgeRNNError as e:
        return Entry(name, path, error=str(e))
    if t.unset:
        return Entry(t.name, path, t, no_device=t.setup)
    try:
        return Entry(t.name, path, t, devices(t))
    except EdgeRNNError as e:
        return Entry(t.name, path, t, error=str(e))


def inventory(names: Iterable[str] | None = None) -> list[Entry]:
    """Every target on the search path (or the targets ``names``: names, aliases or paths),
    expanded into devices. A device id used by two files is a one-line error."""
    if names is None:
        entries = [_entry(stem, p) for stem, p in sorted(list_targets().items())]
    else:
        entries = []
        for n in names:
            t = load_target(n)  # unknown names and invalid files are the user's error here
            entries.append(Entry(t.name, t.path or Path(n), t, no_device=t.setup)
                           if t.unset else Entry(t.name, t.path or Path(n), t, devices(t)))
    owner: dict[str, Entry] = {}
    for e in entries:
        for d in e.devices:
            if d.id in owner and owner[d.id].path != e.path:
                raise EdgeRNNError(f"device id {d.id!r} is in both {owner[d.id].path} and {e.path}: "
                                   "device ids must be unique across the inventory (set id:)")
            owner[d.id] = e
    return entries


# -- checking devices ---------------------------------------------------------------------------
@dataclass
class Check:
    """What ``targets check`` found on one device (or why a file has no device to check)."""

    target: str
    device: str
    status: str  # ok | unreachable: why | missing runtimes: which | no device: hint | invalid: why
    failed: bool
    arch: str = ""
    runtimes: dict[str, str | None] = field(default_factory=dict)  # target's runtime -> version
    start: float = 0.0  # time.time() when the probe began
    end: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    install: str = ""  # the pip line that fixes missing runtimes

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "device": self.device, "status": self.status,
                "failed": self.failed, "arch": self.arch, "runtimes": self.runtimes,
                "start": self.start, "end": self.end, "seconds": round(self.seconds, 3),
                "install": self.install}


def missing_runtimes(t: Target, versions: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(format, runtime, pip name) of every runtime the target names that the device lacks
    (numpy is needed by all; a host-only runtime is not looked for)."""
    from edgernn.probe.runtimes import PIP_NAMES, host_only, runtime_package

    missing = []
    for fmt, rt in t.runtimes.items():
        mod = runtime_package(rt)
        if versions.get(mod) is None and not host_only(rt):
            missing.append((fmt, rt, PIP_NAMES.get(mod, mod)))
    if versions.get("numpy") is None:
        missing.append(("all", "numpy", "numpy"))
    return missing


_LOCKS: dict[Hashable, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _open_lock(t: Target) -> Any:
    """Devices with the same ``open_lock_key`` of their runner class (adb: one adb server) are
    opened one at a time; others at once."""
    key = runner_class(t.runner).open_lock_key(t.extra)
    if key is None:
        return contextlib.nullcontext()
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(key, threading.Lock())


def check_device(d: Device) -> Check:
    """Open the device's runner, read its facts, close it; never raises for a device fault."""
    from edgernn.probe.runtimes import runtime_package
    from edgernn.runners import get_runner

    t = d.target
    c = Check(t.name, d.id, "ok", False, start=time.time())
    runner = None
    try:
        with _open_lock(t):
            runner = get_runner(t)
        facts = dict(runner.facts())
    except EdgeRNNError as e:
        c.status, c.failed = f"unreachable: {e}", True
        return c
    except Exception as e:  # a device fault must not stop the other devices' checks
        c.status, c.failed = f"error: {type(e).__name__}: {str(e)[:200]}", True
        return c
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail again
                runner.close()
        c.end = time.time()
    versions = facts.get("runtimes") or {}
    c.facts, c.arch = facts, str(facts.get("machine") or "?")
    c.runtimes = {rt: versions.get(runtime_package(rt)) for rt in t.runtimes.values()}
    missing = missing_runtimes(t, versions)
    if missing:
        pip = " ".join(getattr(runner, "python", ["python3"])) + " -m pip install"
        c.status = "missing runtimes: " + ", ".join(f"{m[1]} (for {m[0]})" for m in missing)
        c.install = f"{pip} {' '.join(sorted({m[2] for m in missing}))}"
        c.failed = True
    return c


def check_all(entries: list[Entry], workers: int | None = None) -> list[Check]:
    """Check every device of ``entries`` in parallel (one thread and one runner per device);
    templates and invalid files become rows without a probe. Rows in inventory order."""
    rows: list[Check | Device] = []
    for e in entries:
        if e.error:
            rows.append(Check(e.name, "", f"invalid: {e.error}", True))
        elif e.no_device:
            rows.append(Check(e.name, "", f"no device: {e.no_device}", False))
        else:
            rows.extend(e.devices)
    todo = [i for i, r in enumerate(rows) if isinstance(r, Device)]
    if todo:
        with ThreadPoolExecutor(max_workers=workers or min(32, len(todo))) as pool:
            for i, c in zip(todo, pool.map(check_device, [rows[i] for i in todo]), strict=True):
                rows[i] = c
    return [r for r in rows if isinstance(r, Check)]


def failure_line(rows: list[Check]) -> str | None:
    """``N of M devices failed: ...`` (one line), or None when every configured device is ok."""
    bad = [r for r in rows if r.failed]
    if not bad:
        return None
    total = sum(1 for r in rows if r.device or r.failed)
    return (f"{len(bad)} of {total} devices failed: "
            + "; ".join(f"{r.device or r.target}: {r.status}" for r in bad))


def check_table(rows: list[Check]) -> Any:
    """A rich table of the checks: target, device, status, arch, runtimes, seconds."""
    from rich.markup import escape
    from rich.table import Table

    tab = Table(show_lines=False, pad_edge=False)
    tab.add_column("target", overflow="fold", max_width=18)
    tab.add_column("device", overflow="fold", max_width=30)
    tab.add_column("status", overflow="fold", ratio=1)
    tab.add_column("arch", max_width=8)
    tab.add_column("runtimes", overflow="fold", max_width=28)
    tab.add_column("s", justify="right")
    for r in rows:
        colour = "green" if r.status == "ok" else "red" if r.failed else "yellow"
        rts = ", ".join(f"{k} {v or 'missing'}" for k, v in r.runtimes.items())
        tab.add_row(escape(r.target), escape(r.device or "-"),
                    f"[{colour}]{escape(r.status)}[/]", escape(r.arch), escape(rts),
                    f"{r.seconds:.1f}" if r.end else "")
    return tab
