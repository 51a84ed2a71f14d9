"""Local runner: each variant runs in its own Python subprocess on this host, so a crash, a
leak or a runtime's thread pool cannot touch the next measurement."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgernn.errors import RunnerError
from edgernn.isolation import python_argv, signal_name
from edgernn.model import sandbox
from edgernn.probe.main import device_facts, runtime_versions
from edgernn.runners.base import Runner, register_runner


@register_runner("local")
class LocalRunner(Runner):
    ON_HOST = True  # a group is ``count: N`` slots on this host, ids ``<name>#<i>``

    @classmethod
    def int8_saturates(cls, extra: dict[str, Any]) -> bool:
        """This host's CPU: an x86 CPU without VNNI."""
        return x86_without_vnni()

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
        threads_env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                       "OPENBLAS_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore"}
        env = {**os.environ, **threads_env}
        argv = [*python_argv(module="edgernn.probe"), str(job_path), str(out_path)]
        saved = job.get("save_outputs")
        confined = runs_a_program(job)
        if confined:  # PyTorch running the user's file: in the sandbox, writing only self.tmp
            if saved:
                job["save_outputs"] = str(self.tmp / "outputs.npy")
                job_path.write_text(json.dumps(job))
                Path(job["save_outputs"]).unlink(missing_ok=True)
            argv = sandbox.confined_argv(argv, [self.tmp])
            env = sandbox.child_env(self.tmp, threads_env)
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=self.target.timeout_s, stdin=subprocess.DEVNULL,
                                  start_new_session=confined)
        except subprocess.TimeoutExpired:
            raise RunnerError(f"probe timed out after {self.target.timeout_s:.0f} s") from None
        if confined and saved:
            got = self.tmp / "outputs.npy"
            if got.is_file() and not got.is_symlink():
                shutil.move(str(got), saved)
        return read_result(out_path, proc.returncode, proc.stderr)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def runs_a_program(job: dict[str, Any]) -> bool:
    """True when this probe job runs a model file that is a program (PyTorch on a TorchScript
    archive or a trusted pickle) and the sandbox is on: it then runs confined."""
    if job.get("runtime") != "torch" or not sandbox.wanted():
        return False
    from edgernn.model.loading import is_program

    options = job.get("options") or {}
    return is_program(Path(job["path"]), bool(options.get("trust_pickle")))


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


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def x86_without_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """This host is x86 and its CPU lacks every VNNI form: onnxruntime's int8 kernels then use
    ``vpmaddubsw``, whose 16-bit sums of two u8 x s8 products saturate (8-bit weights lose
    accuracy; 7-bit weights, |w| <= 64, cannot: 2 x 255 x 64 < 32767)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return False
    flags = cpu_flags(cpuinfo)
    return bool(flags) and not any(f in flags for f in VNNI_FLAGS)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The first CPU's feature flags in ``cpuinfo`` ([] when it cannot be read or has none)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    return next((line.split(":", 1)[1].split() for line in text.splitlines()
                 if line.startswith("flags")), [])
