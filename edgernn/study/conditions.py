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
            "int8": int8_kernels(), "memory_mb": facts.get("memory_mb"), "os": facts.get("os"),
            "train_threads": train_threads, "jobs": jobs, "torch": version_of("torch"),
            "onnxruntime": version_of("onnxruntime")}


def int8_kernels() -> str:
    """Which int8 dot products this CPU gives onnxruntime: with VNNI exact 32-bit sums, without
    it (x86 AVX2) 16-bit sums that saturate, so int8 accuracy and speed differ between the two."""
    import platform

    from edgernn.runners.local import VNNI_FLAGS, cpu_flags

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return platform.machine()
    have = [f for f in VNNI_FLAGS if f in cpu_flags()]
    return f"VNNI ({', '.join(have)})" if have else "AVX2 without VNNI"


def conditions_text(c: dict[str, Any]) -> str:
    """One line: ``AMD EPYC 7B13, 2 cores, int8 VNNI (avx512_vnni); training 1 thread x 2
    processes; torch 2.13.0, onnxruntime 1.32.0``."""
    return (f"{c.get('cpu')}, {c.get('cores')} cores"
            + (f", int8 {c['int8']}" if c.get("int8") else "")
            + f"; training {c.get('train_threads')} thread"
            f"{'s' if c.get('train_threads') != 1 else ''} x {c.get('jobs')} process"
            f"{'es' if c.get('jobs') != 1 else ''}; torch {c.get('torch')}, onnxruntime "
            f"{c.get('onnxruntime')}")
