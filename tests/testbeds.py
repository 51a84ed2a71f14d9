"""The test beds the suite may start (PostgreSQL, the emulated Pi's sshd, the Android stand-in,
the adb server, Ray): which are up, and stopping the ones this run started.

conftest records what is running when the session starts and, when it ends, stops every test
bed that is running then but was not before (a developer's own server is left alone).
``EDGERNN_KEEP_TESTBEDS=1`` keeps them all running, for a developer who re-runs tests often.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
KEEP_ENV = "EDGERNN_KEEP_TESTBEDS"


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True,
                          timeout=120)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ray_processes() -> list[str]:
    """Pids of Ray's own daemons (gcs_server, raylet) on this machine."""
    out = subprocess.run(["pgrep", "-f", "ray/core/src/ray/(gcs/gcs_server|raylet/raylet)"],
                         capture_output=True, text=True).stdout
    return out.split()


def _ray_stop() -> None:
    ray = Path(sys.executable).parent / "ray"
    if ray.exists():
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=120)


@dataclass(frozen=True)
class TestBed:
    """One kind of background service: how to tell it is up, and how to stop it."""

    name: str
    running: Callable[[], bool]
    stop: Callable[[], object]


def _root() -> bool:
    return os.geteuid() == 0


# stop order matters: the Android stand-in lives in a bind mount of the emulated Pi's root
TESTBEDS = (
    TestBed("android stand-in", lambda: _root() and _script("android_standin.sh", "status")
            .returncode == 0, lambda: _script("android_standin.sh", "stop")),
    TestBed("adb server :5037", lambda: shutil.which("adb") is not None and _port_open(5037),
            lambda: subprocess.run(["adb", "-P", "5037", "kill-server"], capture_output=True,
                                   timeout=60)),
    TestBed("emulated Pi sshd", lambda: _root() and _script("emulated_pi.sh", "status")
            .returncode == 0, lambda: _script("emulated_pi.sh", "stop")),
    TestBed("PostgreSQL", lambda: _root() and _script("postgres.sh", "status").returncode == 0,
            lambda: _script("postgres.sh", "stop")),
    TestBed("Ray", lambda: bool(_ray_processes()), _ray_stop),
)


def running_now() -> set[str]:
    return {bed.name for bed in TESTBEDS if bed.running()}


def stop_started(before: set[str]) -> list[str]:
    """Stop every test bed up now that was not up in ``before``; return their names."""
    stopped = []
    for bed in TESTBEDS:
        if bed.name not in before and bed.running():
            bed.stop()
            stopped.append(bed.name)
    return stopped


def ray_token(folder: Path) -> dict[str, str]:
    """A fresh Ray auth token for this test session, in ``folder`` (never ~/.ray/auth_token:
    a new machine has none, and Ray 2.59+ refuses `ray start --head` without one). Set in the
    environment before anything imports ray: Ray reads RAY_AUTH_MODE when it is imported, so a
    driver that imported ray without it cannot talk to a cluster started with it. Every Ray
    process of the session (heads, worker nodes, drivers in and out of this process) shares it."""
    import secrets

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ray_auth_token"
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}
