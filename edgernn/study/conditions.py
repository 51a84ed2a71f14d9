"""Where and how a comparison ran (CPU, cores, threads, library versions): printed with every
claims table and kept in ``compare.json``, as a timing or speed claim means nothing without it."""

from __future__ import annotations

from typing import Any


def conditions(train_threads: int, jobs: int) -> dict[str, Any]:
    """This machine and the run's settings that change the numbers."""
    from edgernn.probe.main import device_facts
    from edgernn.probe.versions import version_of

    facts = device_facts()
    return {"cpu": facts.get("cpu_model") or facts.get("machine"), "cores": facts.get("cpu_count"),
            "memory_mb": facts.get("memory_mb"), "os": facts.get("os"),
            "train_threads": train_threads, "jobs": jobs, "torch": version_of("torch"),
            "onnxruntime": version_of("onnxruntime")}


def conditions_text(c: dict[str, Any]) -> str:
    """One line: ``AMD EPYC 7B13, 2 cores; training 1 thread x 2 processes; torch 2.13.0,
    onnxruntime 1.32.0``."""
    return (f"{c.get('cpu')}, {c.get('cores')} cores; training {c.get('train_threads')} thread"
            f"{'s' if c.get('train_threads') != 1 else ''} x {c.get('jobs')} process"
            f"{'es' if c.get('jobs') != 1 else ''}; torch {c.get('torch')}, onnxruntime "
            f"{c.get('onnxruntime')}")
