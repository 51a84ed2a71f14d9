"""SSH runner (paramiko): push the probe, artifacts and data to a Linux device, run the probe
there, fetch its JSON, remove the remote working directory.

Host keys are verified against known_hosts; an unknown host is refused unless the target says
``trust_on_first_use: true`` (then its key is recorded). Every remote command is built from
``shlex.quote``-d words, so paths with spaces, quotes, ``;`` or ``$()`` stay literal.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import time
from pathlib import Path
from typing import Any

from edgernn.errors import RunnerError
from edgernn.isolation import shell_signal
from edgernn.runners.base import Runner, register_runner
from edgernn.runners.bundle import probe_zip

_LABEL_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def _is_host(value: str) -> bool:
    """A DNS name (labels of 1..63 letters, digits, '-', '_'), an IPv4 or an IPv6 address."""
    if ":" in value:
        return bool(re.fullmatch(r"[0-9A-Fa-f:.]{2,45}", value))
    return 0 < len(value) <= 253 and all(_LABEL_RE.match(x) for x in value.split("."))


@register_runner("ssh")
class SshRunner(Runner):
    REQUIRED = ("host",)
    SCHEMA: dict[str, Any] = {
        "host": str, "port": int, "user": str, "key": str, "known_hosts": str, "python": str,
        "trust_on_first_use": bool, "connect_timeout_s": (int, float), "remote_tmp": str,
        "env": dict,
    }
    GROUP_SHORTHAND = ("hosts", "host")

    @classmethod
    def value_problem(cls, key: str, value: Any) -> str | None:
        """A host is a DNS name, IPv4 or IPv6 address (no spaces, quotes or ``$()``); a port
        1..65535; a timeout a finite positive number of seconds."""
        if key in ("host", "hosts") and not _is_host(value):
            return (f"{value!r} is not a host name or address (letters, digits, '.', '-', ':' "
                    "and '_' only)")
        if key == "port" and not 0 < value < 65536:
            return f"port {value} is not 1..65535"
        if key == "connect_timeout_s" and not (math.isfinite(value) and 0 < value <= 3600):
            return f"connect_timeout_s {value!r} is not a number of seconds in (0, 3600]"
        return None

    @classmethod
    def device_id(cls, name: str, extra: dict[str, Any], index: int | None = None) -> str:
        """``<name>@<host>:<port>`` when the target names its host."""
        if "host" in extra:
            return f"{name}@{extra['host']}:{int(extra.get('port', 22))}"
        return super().device_id(name, extra, index)

    def __init__(self, target: Any):
        self.target = target
        x = target.extra
        self.host, self.port = x["host"], int(x.get("port", 22))
        self.user = x.get("user")
        self.python = shlex.split(x.get("python", "python3"))
        self.where = f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"
        self.known = Path(x.get("known_hosts", "~/.ssh/known_hosts")).expanduser()
        self.workdir: str | None = None
        self.stale: list[str] = []  # working dirs of dropped connections, removed on reconnect
        self.client: Any = None
        self._connect()

    def _connect(self) -> None:
        """Connect, verify the host key, create a fresh working dir and upload the probe."""
        import paramiko

        x = self.target.extra
        known = self.known
        client = paramiko.SSHClient()
        if known.exists():
            client.load_host_keys(str(known))
        if x.get("trust_on_first_use"):
            known.parent.mkdir(parents=True, exist_ok=True)
            known.touch(exist_ok=True)
            client.load_host_keys(str(known))  # new keys get saved to this file
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key = x.get("key")
        try:
            client.connect(
                self.host, port=self.port, username=self.user,
                key_filename=str(Path(key).expanduser()) if key else None,
                timeout=float(x.get("connect_timeout_s", 10)), banner_timeout=15,
                auth_timeout=15, allow_agent=False, look_for_keys=key is None,
            )
        except paramiko.BadHostKeyException:
            raise RunnerError(
                f"host key of {self.where} does NOT match {known} (the device was reinstalled, or "
                f"someone is in the middle); check it, then remove the old key with "
                f"ssh-keygen -f {known} -R '[{self.host}]:{self.port}'") from None
        except paramiko.AuthenticationException:
            raise RunnerError(f"authentication failed for {self.where} "
                              f"(key {key or 'default keys'})") from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise RunnerError(
                    f"host key of {self.where} is unknown: add it to {known} (ssh-keyscan -p "
                    f"{self.port} {self.host} >> {known}) or set trust_on_first_use: true in "
                    "the target file") from None
            raise RunnerError(f"SSH to {self.where} failed: {e}") from None
        except (TimeoutError, OSError, EOFError) as e:
            raise RunnerError(f"cannot reach {self.where}: {getattr(e, 'strerror', None) or e}") from None
        if x.get("trust_on_first_use"):
            client.save_host_keys(str(known))
        self.client = client
        try:
            self.sftp = client.open_sftp()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise RunnerError(f"SFTP to {self.where} failed: {e}") from None
        for old in self.stale:  # a dropped connection left these behind
            self.exec(["rm", "-rf", "--", old], timeout=60)
        self.stale = []
        base = x.get("remote_tmp", "/tmp")
        code, out, err = self.exec(["mktemp", "-d", f"{base.rstrip('/')}/edgernn-XXXXXXXXXX"])
        if code != 0:
            raise RunnerError(f"cannot create a working directory on {self.where}: {err.strip()}")
        self.workdir = out.strip()
        self.uploaded: dict[tuple[str, float], str] = {}
        try:
            self.put_bytes(probe_zip(), "probe.zip")
        except RunnerError:
            self._cleanup_remote()
            raise

    def connected(self) -> bool:
        t = self.client.get_transport() if self.client else None
        return bool(t and t.is_active())

    def _ensure_connected(self) -> None:
        """Reconnect after a dropped connection (its working dir is removed once back)."""
        if self.connected():
            return
        if self.workdir:
            self.stale.append(self.workdir)
            self.workdir = None
        with contextlib.suppress(Exception):
            self.client.close()
        self._connect()

    # -- remote primitives -------------------------------------------------------------
    def exec(self, argv: list[str], timeout: float | None = None,
             env: dict[str, str] | None = None, pidfile: str | None = None) -> tuple[int, str, str]:
        """Run ``argv`` (each word quoted) on the device; return (exit code, stdout, stderr).
        With ``pidfile``, the command's pid is written there so it can be killed later."""
        import paramiko

        words = [shlex.quote(str(a)) for a in argv]
        if env:
            words = ["env", *[shlex.quote(f"{k}={v}") for k, v in env.items()], *words]
        # run under sh and print $? ourselves: sshd reports a signal death as "exit-signal",
        # which paramiko drops (exit status -1); the shell turns it into 128 + signal number
        if pidfile:
            script = (" ".join(words) + f" & pid=$!; echo $pid > {shlex.quote(pidfile)}; "
                      "wait $pid; echo __edgernn_rc=$? >&2")
        else:
            script = " ".join(words) + "; echo __edgernn_rc=$? >&2"
        cmd = "sh -c " + shlex.quote(script)
        try:
            _, stdout, stderr = self.client.exec_command(cmd, timeout=timeout)
            chan = stdout.channel
            deadline = None if timeout is None else time.monotonic() + timeout
            while not chan.exit_status_ready():
                if deadline and time.monotonic() > deadline:
                    chan.close()
                    raise RunnerError(f"command on {self.where} timed out after {timeout:.0f} s")
                time.sleep(0.05)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = chan.recv_exit_status()
            lines = err.rstrip("\n").rsplit("\n", 1)
            if lines and lines[-1].startswith("__edgernn_rc="):
                code = int(lines[-1].split("=", 1)[1])
                err = lines[0] if len(lines) == 2 else ""
            else:
                code = -1  # the shell itself died: killed, or the connection dropped
            return code, out, err
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as e:
            raise RunnerError(f"connection to {self.where} lost: {e}") from None

    def remote(self, name: str) -> str:
        return f"{self.workdir}/{name}"

    def put_bytes(self, data: bytes, name: str) -> str:
        import paramiko

        try:
            with self.sftp.open(self.remote(name), "wb") as f:
                f.write(data)
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise self._upload_error(name, e) from None
        return self.remote(name)

    def _upload_error(self, name: str, e: BaseException) -> RunnerError:
        """Say why an upload failed: the connection dropped, or the device's disk is full."""
        if not self.connected():
            return RunnerError(f"connection to {self.where} lost while uploading {name}")
        why = getattr(e, "strerror", None) or str(e)
        try:
            code, out, _ = self.exec(["df", "-Pk", self.workdir or "/tmp"], timeout=30)
        except RunnerError:
            return RunnerError(f"connection to {self.where} lost while uploading {name}")
        try:
            free = int(out.strip().splitlines()[-1].split()[3]) if code == 0 else None
        except (ValueError, IndexError):
            free = None
        hint = f"; {free} KB free there: the device's disk is full" if free is not None and \
            free < 1024 else ""
        return RunnerError(f"upload of {name} to {self.where} failed ({why}{hint})")

    def put(self, local: Path, role: str) -> str:
        """Upload ``local`` once per connection (as ``<role>-<n><suffix>``, ``n`` counting
        the uploads: two files never share a remote name, so a file uploaded earlier is still
        itself when a later timing trial runs it again); its remote path."""
        import paramiko

        key = (str(local.resolve()), local.stat().st_mtime)
        if key in self.uploaded:
            return self.uploaded[key]
        name = f"{role}-{len(self.uploaded)}{local.suffix}"
        try:
            self.sftp.put(str(local), self.remote(name))
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise self._upload_error(local.name, e) from None
        self.uploaded[key] = self.remote(name)
        return self.uploaded[key]

    # -- runner interface --------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        code, out, err = self.exec([*self.python, self.remote("probe.zip"), "--facts"],
                                   timeout=120)
        if code != 0:
            tail = (err.strip().splitlines() or ["no output"])[-1]
            raise RunnerError(f"{' '.join(self.python)} on {self.where} failed: {tail[:300]}")
        return json.loads(out)

    def measure(self, job: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
        import paramiko

        self._ensure_connected()
        remote_files = {}
        for key, local in sorted(files.items()):
            remote_files[key] = self.put(Path(local), key)
        job = {k: (remote_files[v] if isinstance(v, str) and v in remote_files else v)
               for k, v in job.items()}
        job.pop("save_outputs", None)
        self.put_bytes(json.dumps(job).encode(), "job.json")
        self.exec(["rm", "-f", self.remote("result.json")])
        threads = str(job.get("threads", 1))
        env = {"OMP_NUM_THREADS": threads, **{k: str(v) for k, v in
                                               self.target.extra.get("env", {}).items()}}
        code, _, err = self.exec(
            [*self.python, self.remote("probe.zip"), self.remote("job.json"),
             self.remote("result.json")], timeout=self.target.timeout_s, env=env,
            pidfile=self.remote("probe.pid"))
        try:
            with self.sftp.open(self.remote("result.json"), "rb") as f:
                result = json.loads(f.read())
        except (OSError, EOFError, ValueError, paramiko.SSHException):
            result = None
        if result is None:
            if shell_signal(code):
                raise RunnerError(f"runtime crashed on {self.where} ({shell_signal(code)})")
            if code == -1:
                raise RunnerError(f"connection to {self.where} lost while measuring")
            tail = (err.strip().splitlines() or ["no output"])[-1]
            raise RunnerError(f"probe on {self.where} exited with code {code}: {tail[:300]}")
        if not result.get("ok"):
            raise RunnerError(f"on {self.where}: {result.get('error', 'probe failed')}")
        return result

    def _cleanup_remote(self) -> None:
        """Kill a probe still running (e.g. after Ctrl-C) and remove only our working dir."""
        if not self.workdir:
            return
        pid = shlex.quote(self.remote("probe.pid"))
        self.exec(["sh", "-c", f"[ -f {pid} ] && kill -9 $(cat {pid}) 2>/dev/null; true"],
                  timeout=30)
        self.exec(["rm", "-rf", "--", self.workdir], timeout=60)
        self.workdir = None

    def close(self) -> None:
        try:
            if not self.connected() and (self.workdir or self.stale):
                with contextlib.suppress(RunnerError):
                    self._ensure_connected()  # come back once to remove what we left
            with contextlib.suppress(RunnerError):
                for old in self.stale:
                    self.exec(["rm", "-rf", "--", old], timeout=60)
                self.stale = []
                self._cleanup_remote()
        finally:
            if self.client:
                self.client.close()
