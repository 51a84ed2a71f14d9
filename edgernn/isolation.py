"""Helpers for work done in child processes (converters, probes): kill a child's whole
process group, and name the signal that ended a process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


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
