"""The runner interface: measure one variant on a target and return the probe's result."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from edgernn.errors import EdgeRNNError


class Runner(Protocol):
    """Opened per bench; ``measure`` runs the probe for one variant."""

    def facts(self) -> dict[str, Any]:
        """What the target is (CPU, OS, runtime versions)."""

    def measure(self, job: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
        """Run the probe with ``job`` (paths in it refer to the keys of ``files``); return its
        result dict. Raise RunnerError with a one-line reason on failure."""

    def close(self) -> None: ...


RUNNERS: dict[str, type] = {}


def register_runner(name: str):
    def deco(cls: type) -> type:
        RUNNERS[name] = cls
        return cls

    return deco


def get_runner(target: Any) -> Runner:
    if target.runner not in RUNNERS:
        raise EdgeRNNError(f"unknown runner {target.runner!r}; known: {', '.join(sorted(RUNNERS))}")
    return RUNNERS[target.runner](target)


def sub_variants(target: Any) -> list[str | None]:
    """Measurements a runner makes per artifact (adb: one per delegate); [None] for one."""
    fn = getattr(RUNNERS.get(target.runner), "sub_variants", None)
    return list(fn(target)) if fn else [None]
