"""A user's model file is a program: run it in a sandbox.

A TorchScript archive (and a pickle the user trusted with ``--trust-pickle``) runs code when it
is loaded (``__setstate__``) and when it is called (``forward``). From the CLI, edgernn never
loads such a file in its own process; it starts one sandboxed worker per model file::

    edgernn (parent)                                 bwrap: read-only /, no network, own pids
      load_model(path) --{"op": "load"}------------>  python -I -m edgernn.model.worker
        SandboxedModel <--spec, signature, facts---     load_model(path) (as before)
      model(x)  --in.npz, {"op": "call"}--------->     module(x)
                <--out.npz----------------------
      export_model(model, out) --{"op": "export"}-->   export_model(...) into SCRATCH/out
        files moved into out, manifest <--------------   (steps stream back as they happen)

The worker can write only its scratch folder (everything else is mounted read-only), has no
network (a new, empty network namespace), its own pid namespace, a fresh session (no terminal
injection), a scrubbed environment, and rlimits on address space, CPU time and file size. Every
request has a wall-clock bound (``--call-timeout``): a model that does not return is killed and
the command ends in one line. Arrays come back as ``.npz`` read without pickle; files come back
only as regular files with plain names.

edgernn checkpoints are data (``torch.load(weights_only=True)`` + edgernn's own architecture
code): they load in-process as before. The Python API loads in-process unless
``configure(sandbox=True)``; the CLI turns the sandbox on (``--trust-model`` turns it off).
Children that run a model file (the local probe with the torch runtime) go through
``confined_argv``; every child edgernn starts runs ``python -I``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import numpy as np

from edgernn.errors import EdgeRNNError, ExportError
from edgernn.isolation import kill_group, python_argv, signal_name

SANDBOX_ENV = "EDGERNN_SANDBOXED"  # set inside the sandbox: load in-process there
DEFAULT_CALL_TIMEOUT = 60.0  # seconds one model call (and the load, with its trial run) may take
EXPORT_TIMEOUT_FACTOR = 30  # an export (many traces, conversions, parity runs): 30 calls' worth
MIN_MEMORY = 8 << 30  # the address-space floor: TensorFlow alone reserves ~2.6 GB
MAX_FILE = 16 << 30  # largest file the sandbox may write
MAX_REPLY = 64 << 20  # longest reply line the parent reads


class SandboxError(EdgeRNNError):
    """The sandbox cannot run, or the sandboxed model failed, hung or was killed."""


class CallTimeout(SandboxError):
    """A request to the sandboxed model did not return within its bound."""


@dataclass
class Policy:
    """How user model files are run in this process (the CLI sets it per command)."""

    sandbox: bool = False  # the Python API's default; the CLI's is True
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    memory_bytes: int | None = None  # None: the machine's RAM, at least MIN_MEMORY
    cpu_seconds: int = 4 * 3600


_DEFAULT = Policy()
POLICY = replace(_DEFAULT)


def configure(**changes: Any) -> None:
    """Change the policy of this process, e.g. ``configure(sandbox=True, call_timeout=30)``."""
    for k, v in changes.items():
        if not hasattr(POLICY, k):
            raise TypeError(f"unknown sandbox setting {k}")
        setattr(POLICY, k, v)


def reset() -> None:
    """Back to the Python API's defaults and stop every worker (the CLI calls this when a
    command ends)."""
    for k, v in vars(_DEFAULT).items():
        setattr(POLICY, k, v)
    for w in list(_LIVE):
        w.close()


def inside() -> bool:
    """True in the sandboxed worker or a confined probe (they load in-process)."""
    return os.environ.get(SANDBOX_ENV) == "1"


def wanted() -> bool:
    """True when a program-like model file must run sandboxed here."""
    return POLICY.sandbox and not inside()


# -- the mechanism: bubblewrap + rlimits set in the child before anything else runs ----------

_STATUS: list[str | None] = []
_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()


def unavailable() -> str | None:
    """Why this machine cannot sandbox (no bwrap, or the kernel refuses namespaces); None when
    it can. Checked once per process (a ~15 ms trial run)."""
    if not _STATUS:
        exe = shutil.which("bwrap")
        if exe is None:
            _STATUS.append("bubblewrap (bwrap) is not installed; Debian: apt-get install bubblewrap")
        else:
            try:
                r = subprocess.run([exe, *_FLAGS, "true"], capture_output=True, text=True,
                                   timeout=20)
                why = None if r.returncode == 0 else (
                    "bwrap cannot create namespaces here: "
                    + (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1][:200])
            except (OSError, subprocess.SubprocessError) as e:
                why = f"bwrap does not run: {e}"
            _STATUS.append(why)
    return _STATUS[0]


_FLAGS = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
          "--die-with-parent", "--new-session"]

# run first in the sandbox, by a bare interpreter (no edgernn import): set the limits, then
# exec the real child, which inherits them
_CONFINE = (
    "import json, os, resource, sys\n"
    "lim = json.loads(sys.argv[1])\n"
    "for name, value in lim.items():\n"
    "    resource.setrlimit(getattr(resource, name), (value, value))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def limits() -> dict[str, int]:
    """The rlimits every sandboxed child gets."""
    mem = POLICY.memory_bytes
    if mem is None:
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            mem = 0
        mem = max(MIN_MEMORY, mem)
    return {"RLIMIT_AS": int(mem), "RLIMIT_CPU": int(POLICY.cpu_seconds),
            "RLIMIT_FSIZE": MAX_FILE, "RLIMIT_CORE": 0}


def child_env(scratch: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A scrubbed environment (no tokens, store URLs or PYTHON* variables reach the model):
    HOME and TMPDIR inside the scratch folder."""
    keep = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL", "EDGERNN_DEBUG")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    for sub in ("home", "tmp"):
        (scratch / sub).mkdir(exist_ok=True)
    env.update(HOME=str(scratch / "home"), TMPDIR=str(scratch / "tmp"),
               XDG_CACHE_HOME=str(scratch / "home" / ".cache"), PYTHONWARNINGS="ignore",
               PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="3", **{SANDBOX_ENV: "1"})
    env.update(extra or {})
    return env


def confined_argv(argv: list[str], writable: list[Path]) -> list[str]:
    """``argv`` (a ``python -I ...`` command) run in the sandbox: only ``writable`` folders
    can be written, no network, own pid namespace, rlimits set before it starts."""
    why = unavailable()
    if why:
        raise SandboxError(f"cannot sandbox the model file ({why}); pass --trust-model to run "
                           "it unsandboxed if you trust it")
    binds: list[str] = []
    for w in writable:
        w = Path(w).resolve()
        binds += ["--bind", str(w), str(w)]
    cwd = Path.cwd() if Path.cwd().exists() else Path("/")
    return [shutil.which("bwrap") or "bwrap", *_FLAGS, *binds, "--chdir", str(cwd),
            sys.executable, "-I", "-c", _CONFINE, json.dumps(limits()), *argv]


def death_reason(returncode: int) -> str:
    """Why a sandboxed child ended, for the one line."""
    if returncode < 0:
        sig = signal_name(returncode)
        if -returncode == signal.SIGXCPU:
            return f"{sig}: it used up its CPU-time limit of {POLICY.cpu_seconds} s"
        if -returncode == signal.SIGXFSZ:
            return f"{sig}: it wrote a file larger than {MAX_FILE >> 30} GB"
        return sig
    return f"exit code {returncode}"


# -- the worker: one sandboxed process per model file -----------------------------------------

class Worker:
    """A sandboxed ``edgernn.model.worker`` process: JSON lines in, JSON lines out (arrays and
    files through its scratch folder, the only place it can write)."""

    def __init__(self, label: str):
        self.label = label
        self.scratch = Path(tempfile.mkdtemp(prefix="edgernn-sandbox-"))
        self.log = self.scratch.parent / (self.scratch.name + ".stderr")
        argv = [*python_argv(module="edgernn.model.worker"), str(self.scratch)]
        with open(self.log, "wb") as log:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                confined_argv(argv, [self.scratch]), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, env=child_env(self.scratch),
                start_new_session=True)
        self.buf = b""
        _LIVE.add(self)

    def request(self, req: dict[str, Any], timeout: float, on_step: Any = None) -> dict[str, Any]:
        """Send one request; its reply, or a one-line SandboxError (timeout, death, refusal)."""
        proc = self.proc
        if proc is None:
            raise SandboxError(f"{self.label}: the sandboxed model process has ended")
        try:
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(req) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                reply = _parse(line)
                if reply is None:
                    continue  # not ours (the model cannot print here, but be lenient)
                if "step" in reply:
                    if on_step is not None:
                        on_step(str(reply["step"])[:300])
                    continue
                if reply.get("ok"):
                    return reply
                raise _error(reply)
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise CallTimeout(
                    f"{self.label}: the model did not return within {timeout:.0f} s "
                    f"({req.get('op')}; --call-timeout {POLICY.call_timeout:g}); it was stopped. "
                    "If it is just slow, raise --call-timeout SECONDS")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise self._died()
            self.buf += chunk
            if len(self.buf) > MAX_REPLY:
                self.close()
                raise SandboxError(f"{self.label}: the sandboxed model sent an oversized reply")

    def _died(self) -> SandboxError:
        proc = self.proc
        code = proc.wait() if proc is not None else 0
        self.proc = None
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            text = ""
        tail = [x.strip() for x in text.splitlines() if x.strip()][-1:] or ["no output"]
        if "MemoryError" in tail[0] or code == -signal.SIGKILL:
            hint = (f" (memory limit {limits()['RLIMIT_AS'] >> 30} GB of address space)"
                    if "MemoryError" in tail[0] else "")
        else:
            hint = ""
        self.close()
        return SandboxError(f"{self.label}: the sandboxed model process ended "
                            f"({death_reason(code)}){hint}: {tail[0][:200]}")

    def close(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            for f in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    f.close()  # type: ignore[union-attr]
            self.proc = None
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.log.unlink(missing_ok=True)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        d = json.loads(line)
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def _error(reply: dict[str, Any]) -> EdgeRNNError:
    """The child's refusal as the same one-line error type it raised."""
    from edgernn.model.loading import NoInputSpec

    msg = " ".join(str(reply.get("error") or "the sandboxed model failed").split())[:600]
    cls = {"ExportError": ExportError, "NoInputSpec": NoInputSpec,
           "MemoryError": SandboxError}.get(str(reply.get("type")), EdgeRNNError)
    if reply.get("type") == "MemoryError":
        msg = (f"out of memory in the sandbox (limit {limits()['RLIMIT_AS'] >> 30} GB of "
               f"address space): {msg}")
    return cls(msg)


def read_arrays(path: Path) -> list[np.ndarray]:
    """Arrays ``o0..oN`` from a child's npz (never unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return [np.asarray(z[f"o{i}"]) for i in range(len(z.files))]
    except (OSError, ValueError, KeyError) as e:
        raise SandboxError(f"the sandboxed model returned unreadable outputs ({e})") from None


def move_out(src: Path, dest: Path) -> None:
    """Move what the sandbox wrote into ``dest``: regular files and folders only (a symlink
    or device is refused, never followed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        p = Path(entry.path)
        if entry.is_symlink():
            raise SandboxError(f"the sandboxed export made a symlink {entry.name!r}; refusing it")
        if entry.is_dir(follow_symlinks=False):
            move_out(p, dest / entry.name)
        elif entry.is_file(follow_symlinks=False):
            target = dest / entry.name
            if target.is_symlink() or target.is_dir():
                raise SandboxError(f"{target} exists and is not a plain file; not overwriting it")
            shutil.move(str(p), str(target))
        else:
            raise SandboxError(f"the sandboxed export made a special file {entry.name!r}")


def _check_manifest(manifest: Any) -> dict[str, Any]:
    """The child's manifest: a dict whose artifact paths are plain relative names."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), list):
        raise SandboxError("the sandboxed export returned no manifest")
    for a in manifest["artifacts"]:
        path = a.get("path") if isinstance(a, dict) else None
        if path:
            pp = PurePosixPath(str(path))
            if pp.is_absolute() or ".." in pp.parts:
                raise SandboxError(f"the sandboxed export named an artifact outside its folder "
                                   f"({path!r}); refusing the manifest")
    return manifest


# -- the model as the parent sees it ----------------------------------------------------------

class RemoteModule:
    """Stands for the module that lives in the sandbox: calls go there; what the parent may ask
    about its layers comes from facts the worker reported at load time."""

    training = False

    def __init__(self, worker: Worker, facts: dict[str, Any]):
        self.worker, self.facts = worker, facts
        self.scripted = bool(facts.get("scripted"))
        self.original_name = str(facts.get("class") or "Module")

    def __call__(self, *inputs: Any) -> Any:
        import torch

        outs = self.run([np.asarray(torch.as_tensor(a)) for a in inputs])
        ts = [torch.from_numpy(o) for o in outs]
        return ts[0] if len(ts) == 1 else tuple(ts)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        w = self.worker
        (w.scratch / "out.npz").unlink(missing_ok=True)
        np.savez(w.scratch / "in.npz", **{f"i{k}": a for k, a in enumerate(inputs)})
        w.request({"op": "call", "inputs": "in.npz", "outputs": "out.npz"},
                  POLICY.call_timeout)
        return read_arrays(w.scratch / "out.npz")

    def eval(self) -> RemoteModule:
        return self

    def named_modules(self) -> list[tuple[str, Any]]:
        return [(d.get("name", ""), SimpleNamespace(**d)) for d in self.facts.get("layers", [])]

    def modules(self) -> list[Any]:
        return [m for _, m in self.named_modules()]

    def int8_bytes(self) -> int:
        return int(self.worker.request({"op": "int8_bytes"}, POLICY.call_timeout * 5)["bytes"])


def load_sandboxed(path: Path, options: dict[str, Any]) -> Any:
    """``load_model(path, **options)`` run in a new sandboxed worker: the parent's stand-in."""
    from edgernn.model.loading import SandboxedModel

    worker = Worker(path.name)
    try:
        facts = worker.request({"op": "load", "path": str(path.resolve()),
                                "options": _jsonable_options(options)}, POLICY.call_timeout)
    except BaseException:
        worker.close()
        raise
    return SandboxedModel.from_facts(path, facts, RemoteModule(worker, facts))


def export_sandboxed(model: Any, out_dir: Path, formats: list[str], modes: list[str],
                     target: str, on_step: Any, calib: np.ndarray | None,
                     calib_source: str | None, parity_inputs: np.ndarray | None, budget: Any,
                     opt_in: frozenset[str], seven_bit_weights: bool,
                     skip: dict[str, str] | None) -> dict[str, Any]:
    """``export_model`` of a sandboxed model: run in its worker into the scratch folder, files
    then moved into ``out_dir`` (plain files only), the manifest back as data."""
    w: Worker = model.module.worker
    work = w.scratch / "export"
    shutil.rmtree(work, ignore_errors=True)
    arrays = {k: v for k, v in (("calib", calib), ("parity", parity_inputs)) if v is not None}
    req: dict[str, Any] = {
        "op": "export", "dir": "export", "formats": list(formats), "modes": list(modes),
        "target": target, "calib_source": calib_source, "opt_in": sorted(opt_in),
        "seven_bit_weights": bool(seven_bit_weights), "skip": dict(skip or {})}
    if budget is not None:  # with its judged output and --metric-fn (loaded again there)
        req["budget"], budget_arrays = budget.to_request()
        arrays |= budget_arrays
    np.savez(w.scratch / "export-in.npz", **arrays)
    req["arrays"] = "export-in.npz"
    bound = max(POLICY.call_timeout * EXPORT_TIMEOUT_FACTOR, POLICY.call_timeout)
    reply = w.request(req, bound, on_step)
    manifest = _check_manifest(reply.get("manifest"))
    if work.is_dir():
        move_out(work, out_dir)
    return manifest


def _jsonable_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}
