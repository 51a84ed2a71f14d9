"""Local runner: each variant runs in its own Python subprocess on this host, so a crash, a
leak or a runtime's thread pool cannot touch the next measurement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgernn.errors import RunnerError
from edgernn.isolation import signal_name
from edgernn.probe.main import device_facts, runtime_versions
from edgernn.runners.base import Runner, register_runner


@register_runner("local")
class LocalRunner(Runner):
    ON_HOST = True  # a group is ``count: N`` slots on this host, ids ``<name>#<i>``

    def __init__(self, target: Any):
        self.target = target
        self.tmp = Path(tempfile.mkdtemp(prefix="edgernn-local-"))

    def facts(self) -> dict[str, Any]:
        f = device_facts()
        f["runtimes"] = runtime_versions(host=True)
        return f

    def measure(self, job: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
        job = {k: (str(files[v]) if isinstance(v, str) and v in files else v) for k, v in job.items()}
        job_path = self.tmp / "job.json"
        out_path = self.tmp / "result.json"
        out_path.unlink(missing_ok=True)
        job_path.write_text(json.dumps(job))
        threads = str(job.get("threads", 1))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore"}
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "edgernn.probe", str(job_path), str(out_path)],
                env=env, capture_output=True, text=True, timeout=self.target.timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise RunnerError(f"probe timed out after {self.target.timeout_s:.0f} s") from None
        return read_result(out_path, proc.returncode, proc.stderr)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


def read_result(out_path: Path, returncode: int, stderr: str) -> dict[str, Any]:
    """Turn a probe's exit into its result dict or a one-line RunnerError."""
    if returncode < 0 or not out_path.exists():
        if returncode < 0:
            raise RunnerError(f"runtime crashed ({signal_name(returncode)}) while measuring")
        tail = [x for x in stderr.strip().splitlines() if x.strip()][-1:] or ["no output"]
        raise RunnerError(f"probe exited with code {returncode}: {tail[0][:300]}")
    result = json.loads(out_path.read_text())
    if not result.get("ok"):
        raise RunnerError(result.get("error", "probe failed"))
    return result
