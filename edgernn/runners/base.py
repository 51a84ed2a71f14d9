"""The runner interface: measure one variant on a target and return the probe's result.

A runner class is registered under the name target files give as ``runner:``; besides the
instance methods it declares (class-level, read before any device is opened) what target files
of that runner may say and how their devices are named:

- ``REQUIRED`` / ``SCHEMA``: the runner keys a target must set / may set (key -> type);
- ``GROUP_SHORTHAND``: ``(group key, runner key)`` when a file may list its devices by one key
  (``hosts: [...]`` sets ``host`` per device), else None;
- ``ON_HOST``: the runner measures on this host, so a group of it is ``count: N`` slots here;
- ``device_id(name, extra, index)``: the id of a device whose file gives it none;
- ``open_lock_key(extra)``: devices with the same key are opened one at a time (None: no lock);
- ``int8_saturates(extra)``: the device's CPU saturates 8-bit integer products (x86 without
  VNNI), so int8 files for it store 7-bit weights.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

from edgernn.errors import EdgeRNNError


class Runner:
    """Opened per bench; ``measure`` runs the probe for one variant."""

    REQUIRED: tuple[str, ...] = ()
    SCHEMA: dict[str, Any] = {}
    GROUP_SHORTHAND: tuple[str, str] | None = None
    ON_HOST = False

    @classmethod
    def value_problem(cls, key: str, value: Any) -> str | None:
        """What is wrong with runner key ``key``'s (well-typed) value, or None (a target file
        is refused in one line naming it)."""
        return None

    @classmethod
    def device_id(cls, name: str, extra: dict[str, Any], index: int | None = None) -> str:
        """``<name>``, or ``<name>#<index>`` for slot ``index`` (a template that names no
        device is ``<name>``)."""
        return name if index is None else f"{name}#{index}"

    @classmethod
    def open_lock_key(cls, extra: dict[str, Any]) -> Hashable | None:
        """Devices whose keys are equal are opened one at a time; None: no lock."""
        return None

    @classmethod
    def int8_saturates(cls, extra: dict[str, Any]) -> bool:
        """Whether the device's CPU saturates 8-bit u8 x s8 products in int16 (x86 without
        VNNI); False where it cannot be known before the device is opened."""
        return False

    def facts(self) -> dict[str, Any]:
        """What the target is (CPU, OS, runtime versions)."""
        raise NotImplementedError

    def measure(self, job: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
        """Run the probe with ``job`` (paths in it refer to the keys of ``files``); return its
        result dict. Raise RunnerError with a one-line reason on failure."""
        raise NotImplementedError

    def close(self) -> None: ...


RUNNERS: dict[str, type[Runner]] = {}


def register_runner(name: str):
    def deco(cls: type[Runner]) -> type[Runner]:
        RUNNERS[name] = cls
        return cls

    return deco


def runner_class(name: str) -> type[Runner]:
    """The class registered as ``name``; the plain ``Runner`` (its defaults) for an unknown name."""
    return RUNNERS.get(name, Runner)


def get_runner(target: Any) -> Runner:
    if target.runner not in RUNNERS:
        raise EdgeRNNError(f"unknown runner {target.runner!r}; known: {', '.join(sorted(RUNNERS))}")
    return RUNNERS[target.runner](target)


def sub_variants(target: Any) -> list[str | None]:
    """Measurements a runner makes per artifact (adb: one per delegate); [None] for one."""
    fn = getattr(RUNNERS.get(target.runner), "sub_variants", None)
    return list(fn(target)) if fn else [None]
