"""Helpers for work done in child processes (converters, probes): the isolated interpreter
command every child runs, kill a child's whole process group, a child that dies with its
parent, and name the signal that ended a process."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

# edgernn's own source root, when it runs from a checkout (not an installed package)
_ROOT = Path(__file__).resolve().parents[1]


PARENT_ENV = "EDGERNN_PARENT_PID"  # set by a parent for children that must die with it


def parent_env() -> dict[str, str]:
    """The environment entry that lets a child started now check it still has its parent."""
    return {PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """In a child started in its own session (a converter): have Linux SIGKILL it when its
    parent dies. A parent killed by SIGKILL or SIGTERM runs no cleanup, and its converter would
    otherwise run on for minutes, holding a core. If the parent is already gone (the child was
    re-parented before this ran), exit now. Elsewhere than Linux: nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PDEATHSIG
    expected = os.environ.get(PARENT_ENV, "")
    if expected.isdigit() and os.getppid() != int(expected):
        os._exit(1)


def python_argv(module: str | None = None, code: str | None = None) -> list[str]:
    """``python -I`` running ``module`` as ``__main__`` (or ``code``): no current directory,
    PYTHONPATH or user site on ``sys.path`` (a file named ``onnxruntime.py`` where edgernn was
    started is never imported), and no PYTHON* variables read. When edgernn is installed (the
    usual case, editable or not) that is ``python -I -m module``; from a bare checkout, its
    root (this package's own folder, never the working directory) is put on the path first.
    Arguments follow the returned list; the child sees them as ``sys.argv[1:]``."""
    if module is not None and _installed():
        return [sys.executable, "-I", "-m", module]
    boot = "import sys\n"
    if _ROOT.name not in ("site-packages", "dist-packages"):
        boot += f"sys.path.insert(0, {str(_ROOT)!r})\n"
    if module is not None:
        boot += f"import runpy\nrunpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    elif code is not None:
        boot += code
    return [sys.executable, "-I", "-c", boot]


@functools.cache
def _installed() -> bool:
    """Whether ``python -I`` imports this very edgernn (checked once per process)."""
    try:
        out = subprocess.run([sys.executable, "-I", "-c", "import edgernn; print(edgernn.__file__)"],
                             capture_output=True, text=True, timeout=60, cwd="/")
    except (OSError, subprocess.TimeoutExpired):
        return False
    found = out.stdout.strip()
    return out.returncode == 0 and bool(found) and Path(found).resolve().parent == _ROOT / "edgernn"


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a child started with ``start_new_session=True`` and everything it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    proc.wait()


def signal_name(returncode: int) -> str:
    """``-11`` -> ``SIGSEGV`` (a negative return code means death by that signal)."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


# Linux signal numbers (Raspberry Pi OS and Android alike), for exit codes seen on a device:
# a shell reports death by signal N as exit status 128 + N
LINUX_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS",
                 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"}


def shell_signal(code: int) -> str | None:
    """The signal behind a remote shell's exit status (139 -> SIGSEGV), else None."""
    return LINUX_SIGNALS.get(code - 128) if code > 128 else None
