"""The adb transport of the Android runner: one device behind one adb server, driven through
the real ``adb`` client.

The client is run with argument lists (no host shell); a remote command is one string of
``shlex.quote``-d words, so paths with spaces or quotes stay literal. Every adb call has a
timeout. Exit codes: with the device's ``shell_v2`` feature (Android 7+) ``adb shell`` returns
the remote exit code (adb 29 does); without it the command appends ``echo __edgernn_rc=$?`` and
the code is read from the output (``NO_STATUS`` when the remote shell died before printing it).

Errors are one-line RunnerErrors that say how to fix the cause (no server, no/several/
unauthorized/offline devices, a lost device, a failed push).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from edgernn.errors import RunnerError

DEFAULT_SERVER = "127.0.0.1:5037"
RC_MARK = "__edgernn_rc="
NO_STATUS = -1  # the exit code of a remote shell (without shell_v2) that died before its status
ADB_CLIENT_ERROR = re.compile(
    r"^(?:adb: )?error: (?:device|no devices|closed|more than one|protocol fault|cannot connect|"
    r"failed to get feature set)", re.M)


def parse_devices(text: str) -> list[tuple[str, str]]:
    """``adb devices`` output -> [(serial, state)]; the state may be several words
    ("no permissions (...)")."""
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        if "\t" in line:
            serial, state = line.split("\t", 1)
        else:
            parts = line.split(None, 1)
            if len(parts) != 2:
                continue
            serial, state = parts
        out.append((serial.strip(), state.strip()))
    return out


def first_line(text: str, default: str = "no output") -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return (lines[0] if lines else default)[:300]


def last_line(text: str, default: str = "no output") -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return (lines[-1] if lines else default)[:300]


class AdbClient:
    """``adb`` against the server at ``server`` (host:port); ``attach`` picks the device that
    ``shell``/``push``/``getprops`` then talk to. ``call_timeout`` bounds each short adb call.
    ``owner`` (e.g. "target pixel") prefixes the error about a malformed ``server``."""

    def __init__(self, adb: str = "adb", server: str = DEFAULT_SERVER, call_timeout: float = 60.0,
                 owner: str = ""):
        self.call_timeout = call_timeout
        self.adb = self._adb_path(adb)
        host, _, port = str(server).rpartition(":")
        if not host or not port.isdigit():
            raise RunnerError(f"{owner + ': ' if owner else ''}adb_server must be host:port, "
                              f"got {server!r}")
        self.server = (host, int(port))
        # adb only starts a server itself when none is named with -H (a local one)
        self.local_server = host in ("127.0.0.1", "localhost", "::1")
        self.base = [self.adb, "-P", port] if self.local_server else [self.adb, "-H", host, "-P", port]
        self.serial: str | None = None  # set by attach()
        self.shell_v2 = False

    def attach(self, serial: str | None = None, connect: str | None = None) -> str:
        """Start the server if needed, ``adb connect`` to ``connect`` (host:port) if given, pick
        the device (``serial``, else the only one attached) and read its features."""
        self.ensure_server()
        self.serial = self.pick_device(serial, connect)
        self.shell_v2 = "shell_v2" in self.features()
        return self.serial

    @staticmethod
    def _adb_path(value: str) -> str:
        found = shutil.which(os.path.expanduser(value))
        if found is None:
            raise RunnerError(f"adb not found ({value!r}): install it (Debian: apt-get install adb; "
                              "or Android SDK platform-tools) or set adb: in the target file")
        return found

    def _run(self, args: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*self.base, *args], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace",
                                  timeout=timeout, env={**os.environ, "ADB_MDNS": "0"})
        except subprocess.TimeoutExpired:
            raise RunnerError(f"{what} timed out after {timeout:.0f} s") from None
        except OSError as e:
            raise RunnerError(f"cannot run {self.adb}: {e.strerror or e}") from None

    # -- server and devices --------------------------------------------------------------
    def _server_up(self) -> bool:
        try:
            with socket.create_connection(self.server, timeout=2):
                return True
        except OSError:
            return False

    def ensure_server(self) -> None:
        """Start the adb server when nothing listens at adb_server (only a local one can be)."""
        if self._server_up():
            return
        where = f"{self.server[0]}:{self.server[1]}"
        if not self.local_server:
            raise RunnerError(f"no adb server answers at {where}: start it there (adb -a -P "
                              f"{self.server[1]} nodaemon server) or fix adb_server")
        proc = self._run(["start-server"], 30, f"adb start-server ({where})")
        if proc.returncode != 0 or not self._server_up():
            raise RunnerError(f"the adb server at {where} is not running and could not be started: "
                              f"{last_line(proc.stderr + proc.stdout)}")

    def devices(self) -> list[tuple[str, str]]:
        proc = self._run(["devices"], self.call_timeout, "adb devices")
        if proc.returncode != 0:
            raise RunnerError(f"adb devices failed: {last_line(proc.stderr + proc.stdout)}")
        return parse_devices(proc.stdout)

    def connect(self, addr: str) -> str:
        proc = self._run(["connect", addr], max(self.call_timeout, 30), f"adb connect {addr}")
        text = (proc.stdout + proc.stderr).strip()
        line = last_line(text)
        if "failed to authenticate" in text:
            raise RunnerError(f"adb connect {addr}: {line}; accept the 'Allow debugging?' prompt "
                              "on the phone, then retry")
        if proc.returncode != 0 or not re.search(r"\b(already )?connected to\b", text):
            raise RunnerError(f"adb connect {addr} failed: {line}")
        m = re.search(r"connected to (\S+)", text)
        return m.group(1) if m else addr

    def pick_device(self, serial: str | None, connect: str | None) -> str:
        if connect:
            connected = self.connect(connect)
            serial = serial or connected
        devs = self.devices()
        if serial is None:
            if not devs:
                raise RunnerError("no Android device attached (adb devices lists none): plug one "
                                  "in with USB debugging on, or set connect: HOST:PORT (or serial:) "
                                  "in the target file")
            if len(devs) > 1:
                listed = ", ".join(f"{s} ({st})" for s, st in devs)
                raise RunnerError(f"{len(devs)} Android devices attached ({listed}): set serial: in "
                                  "the target file to pick one")
            serial = devs[0][0]
        self.check_state(serial, devs)
        return serial

    def check_state(self, serial: str | None = None, devs: list[tuple[str, str]] | None = None) -> None:
        """One-line error unless ``serial`` (default: the attached device) is in state 'device'
        (waits briefly for transient states such as a just-connected device that is still
        'offline'/'authorizing')."""
        serial = self.serial if serial is None else serial
        deadline = time.monotonic() + 5
        devs = self.devices() if devs is None else devs
        while True:
            state = dict(devs).get(serial)
            if state == "device":
                return
            if state not in ("offline", "connecting", "authorizing") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
            devs = self.devices()
        if state is None:
            listed = ", ".join(f"{s} ({st})" for s, st in devs) or "none"
            if re.fullmatch(r"emulator-\d+", serial):
                raise RunnerError(f"no device {serial} is attached (adb devices lists: {listed}): "
                                  "start the emulator with scripts/start_android_emulator.sh "
                                  "AVD_NAME, then retry")
            raise RunnerError(f"Android device {serial} not found (adb devices lists: {listed}); "
                              "check the cable/USB debugging, or set connect: HOST:PORT")
        if state == "unauthorized":
            raise RunnerError(f"Android device {serial} is unauthorized: unlock the phone and accept "
                              "the 'Allow USB debugging?' RSA key prompt (tick 'Always allow'), "
                              "then retry")
        if state == "offline":
            raise RunnerError(f"Android device {serial} is offline: reconnect it (replug USB, or "
                              f"adb disconnect {serial} then adb connect over Wi-Fi), wake the "
                              "phone, or restart adb (adb kill-server)")
        if state.startswith("no permissions"):
            raise RunnerError(f"no permission to open Android device {serial} over USB: {state}")
        raise RunnerError(f"Android device {serial} is in state {state!r}, not 'device'")

    def features(self) -> list[str]:
        proc = self._run(["-s", self.serial, "features"], self.call_timeout, "adb features")
        if proc.returncode != 0:
            raise RunnerError(f"adb features on {self.serial} failed: "
                              f"{last_line(proc.stderr + proc.stdout)}")
        return proc.stdout.split()

    # -- remote primitives (on the attached device) -------------------------------------------
    def shell(self, words: list[str], timeout: float | None = None,
              what: str = "adb shell") -> tuple[int, str, str]:
        """Run ``words`` (each quoted) on the device; return (exit code, stdout, stderr)."""
        cmd = " ".join(shlex.quote(str(w)) for w in words)
        return self.shell_script(cmd, timeout, what)

    def shell_script(self, cmd: str, timeout: float | None = None,
                     what: str = "adb shell") -> tuple[int, str, str]:
        """Run the shell script ``cmd`` as written; (exit code, stdout, stderr)."""
        if not self.shell_v2:
            cmd = f"{cmd}; echo {RC_MARK}$?"
        timeout = self.call_timeout if timeout is None else timeout
        proc = self._run(["-s", self.serial, "shell", cmd], timeout, f"{what} on {self.serial}")
        out, err, code = proc.stdout, proc.stderr, proc.returncode
        if ADB_CLIENT_ERROR.search(err) and code != 0 and not out.strip():
            raise RunnerError(f"adb lost the device {self.serial}: {first_line(err)}")
        if not self.shell_v2:
            lines = out.rstrip("\r\n").split("\n")
            if lines and lines[-1].strip().startswith(RC_MARK):
                code = int(lines[-1].strip()[len(RC_MARK):])
                out = "\n".join(lines[:-1])
            else:
                code = NO_STATUS  # the remote shell died before printing its status
        return code, out, err

    def push(self, local: Path, remote: str) -> None:
        size_mb = local.stat().st_size / 1e6
        proc = self._run(["-s", self.serial, "push", str(local), remote],
                         self.call_timeout + 2 * size_mb, f"adb push {local.name}")
        if proc.returncode != 0:
            raise RunnerError(f"adb push of {local.name} to {self.serial}:{remote} failed: "
                              f"{last_line(proc.stderr + proc.stdout)}")

    def getprops(self, props: Iterable[str], commands: dict[str, str] | None = None) -> dict[str, str]:
        """The device's properties ``props`` (``getprop``) and the output of each shell command
        in ``commands`` (key -> command), read in one shell call: key -> value."""
        parts = [f'echo "{p}=$(getprop {p})"' for p in props]
        parts += [f'echo "{k}=$({c})"' for k, c in (commands or {}).items()]
        code, out, err = self.shell_script("; ".join(parts), what="getprop")
        if code != 0:
            raise RunnerError(f"reading properties of {self.serial} failed: {last_line(err + out)}")
        p = {}
        for line in out.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                p[k.strip()] = v.strip()
        return p
