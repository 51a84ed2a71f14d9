#!/usr/bin/env python3
"""STAND-IN for an Android device's adbd: a small adb-protocol daemon over TCP.

NOT Android. It speaks the adb wire protocol (the same packets a phone's adbd sends over
`adb tcpip` / Wi-Fi debugging), so the REAL adb client and server (`adb connect 127.0.0.1:PORT`)
treat it as a device. It is meant to run under the arm64 Python of the emulated Debian root
(scripts/android_standin.sh), so `adb shell uname -m` prints aarch64 and pushed aarch64
binaries run there under qemu-user.

Implemented (stdlib only):
- transport: CNXN (version 0x01000001, no checksum check), OPEN / OKAY / WRTE / CLSE with
  per-stream flow control (one WRTE in flight per stream, as adb requires);
- AUTH only to refuse: `--auth never` sends AUTH tokens and never accepts a signature or the
  public key, which is what a phone does while its "Allow USB debugging?" prompt is pending;
  adb then lists the device as `unauthorized`. `--auth accept` accepts once the host has sent
  its public key (as if the user tapped "Allow"). No RSA check is done (stand-in);
- `--state offline`: accept TCP connections but never answer the host's CNXN (a device that
  does not finish the handshake), so adb lists it as `offline`;
- services `shell:CMD` (v1: one stream, no exit code), `shell,v2,...:CMD` (stdin/stdout/
  stderr/exit packets; exit code 128+N for a signal N, like adbd), `exec:CMD`, and `sync:`
  (STAT, STA2, LST2, LIST, SEND, RECV, DONE, DATA, QUIT; SEND creates parent directories,
  as with the `fixed_push_mkdir` feature);
- configurable properties (`--prop KEY=VALUE`, `--props FILE`): written to a props file that
  the stand-in `getprop` in PATH reads (EDGERNN_STANDIN_PROPS), and partly sent in the CNXN
  banner (ro.product.name/model/device) like adbd does.

Commands run as `/bin/sh -c CMD` (dash here; mksh/toybox on a phone) in their own process
group with cwd `/`; a stream closed by the host kills that group.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_AUTH = 0x48545541
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
NAMES = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_OPEN: "OPEN", A_OKAY: "OKAY", A_CLSE: "CLSE",
         A_WRTE: "WRTE", A_AUTH: "AUTH"}
# shell v2 packet ids (adb's shell_protocol.h)
ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW = 0, 1, 2, 3, 4, 5
SYNC_DATA_MAX = 64 * 1024
FEATURES = ["shell_v2", "cmd", "stat_v2", "fixed_push_mkdir"]
DEFAULT_PROPS = {
    "ro.product.manufacturer": "edgernn",
    "ro.product.model": "edgernn stand-in (qemu arm64)",
    "ro.product.name": "edgernn_standin",
    "ro.product.device": "standin",
    "ro.product.brand": "edgernn",
    "ro.board.platform": "qemu-user stand-in",
    "ro.hardware": "standin",
    "ro.soc.manufacturer": "QEMU",
    "ro.soc.model": "qemu-user cortex-a76 (stand-in, not a phone SoC)",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.build.type": "userdebug",
    "ro.build.fingerprint": "edgernn/standin/standin:14/STANDIN/0:userdebug/test-keys",
    "ro.debuggable": "1",
    "sys.boot_completed": "1",
    "edgernn.standin": "1",
}

LOG_LOCK = threading.Lock()
CHILDREN: set[subprocess.Popen] = set()  # running shell commands (killed on SIGTERM)
VERBOSE = False


def log(msg: str) -> None:
    if VERBOSE:
        with LOG_LOCK:
            print(f"adbd_standin[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


class Closed(Exception):
    pass


class Stream:
    """One adb stream (a service opened by the host)."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.ready = threading.Event()
        self.ready.set()  # the first WRTE may go out at once; then wait for OKAY each time
        self.closed = threading.Event()
        self._close_sent = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        max_len = self.conn.max_payload
        for i in range(0, len(data), max_len):
            chunk = data[i:i + max_len]
            while not self.ready.wait(0.5):
                if self.closed.is_set() or self.conn.dead.is_set():
                    raise Closed()
            if self.closed.is_set():
                raise Closed()
            self.ready.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, chunk)

    def close(self) -> None:
        """Close from this side (service finished)."""
        with self._lock:
            if self._close_sent:
                return
            self._close_sent = True
        self.closed.set()
        self.conn.drop(self.local_id)
        with contextlib.suppress(OSError):
            self.conn.send(A_CLSE, self.local_id, self.remote_id, b"")

    # called by the connection's reader thread
    def on_data(self, data: bytes) -> None:  # pragma: no cover - per service
        pass

    def on_remote_close(self) -> None:
        self.closed.set()
        self.ready.set()


class ShellStream(Stream):
    """shell: / shell,v2: / exec: -- a /bin/sh -c CMD subprocess."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int, cmd: str, v2: bool):
        super().__init__(conn, local_id, remote_id)
        self.v2 = v2
        self.buf = b""
        argv = ["/bin/sh", "-c", cmd] if cmd.strip() else ["/bin/sh"]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if v2 else subprocess.STDOUT, cwd="/",
            env=conn.server.shell_env, start_new_session=True, bufsize=0)
        CHILDREN.add(self.proc)
        log(f"shell{' v2' if v2 else ''} pid {self.proc.pid}: {cmd!r}")
        self.out_lock = threading.Lock()
        pumps = [threading.Thread(target=self._pump, args=(self.proc.stdout, ID_STDOUT), daemon=True)]
        if v2:
            pumps.append(threading.Thread(target=self._pump, args=(self.proc.stderr, ID_STDERR),
                                          daemon=True))
        for t in pumps:
            t.start()
        threading.Thread(target=self._finish, args=(pumps,), daemon=True).start()

    def _emit(self, kind: int, data: bytes) -> None:
        with self.out_lock:
            if self.v2:
                self.write(struct.pack("<BI", kind, len(data)) + data)
            else:
                self.write(data)

    def _pump(self, pipe, kind: int) -> None:
        try:
            while True:
                data = pipe.read(65536)
                if not data:
                    break
                self._emit(kind, data)
        except (Closed, OSError, ValueError):
            pass

    def _finish(self, pumps) -> None:
        code = self.proc.wait()
        CHILDREN.discard(self.proc)
        for t in pumps:
            t.join()
        # adbd: WIFSIGNALED -> 0x80 | signal number
        exit_code = (0x80 | -code) if code < 0 else code & 0xFF
        log(f"pid {self.proc.pid} exited with {exit_code}")
        try:
            if self.v2 and not self.closed.is_set():
                self._emit(ID_EXIT, bytes([exit_code]))
        except (Closed, OSError):
            pass
        self.close()

    def on_data(self, data: bytes) -> None:
        if not self.v2:
            self._stdin(data)
            return
        self.buf += data
        while len(self.buf) >= 5:
            kind, n = struct.unpack("<BI", self.buf[:5])
            if len(self.buf) < 5 + n:
                break
            payload, self.buf = self.buf[5:5 + n], self.buf[5 + n:]
            if kind == ID_STDIN:
                self._stdin(payload)
            elif kind == ID_CLOSE_STDIN:
                self._close_stdin()

    def _stdin(self, data: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.write(data)

    def _close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def on_remote_close(self) -> None:
        super().on_remote_close()
        self._close_stdin()
        if self.proc.poll() is None:  # the host went away: end the command's process group
            log(f"stream closed by host: killing process group {self.proc.pid}")
            for sig in (signal.SIGHUP, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except OSError:
                    break
                try:
                    self.proc.wait(timeout=2)
                    break
                except subprocess.TimeoutExpired:
                    continue


class SyncStream(Stream):
    """sync: -- file transfer (push/pull/stat/list)."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int):
        super().__init__(conn, local_id, remote_id)
        self.buf = b""
        self.send: dict | None = None  # an ongoing SEND: path, mode, file, error
        self.q: list[bytes] = []
        self.cv = threading.Condition()
        threading.Thread(target=self._worker, daemon=True).start()

    def on_data(self, data: bytes) -> None:
        with self.cv:
            self.q.append(data)
            self.cv.notify()

    def on_remote_close(self) -> None:
        super().on_remote_close()
        with self.cv:
            self.cv.notify()

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            with self.cv:
                while not self.q and not self.closed.is_set():
                    self.cv.wait(0.5)
                if not self.q:
                    raise Closed()
                self.buf += b"".join(self.q)
                self.q.clear()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _worker(self) -> None:
        try:
            while True:
                ident, n = struct.unpack("<4sI", self._read(8))
                if ident == b"QUIT":
                    break
                if ident in (b"STAT", b"STA2", b"LST2", b"LIST", b"SEND", b"RECV"):
                    arg = self._read(n)
                    getattr(self, "_" + ident.decode().lower())(arg.decode("utf-8", "surrogateescape"))
                else:
                    self._fail(f"unknown sync command {ident!r}")
                    break
        except (Closed, OSError):
            pass
        self.close()

    def _fail(self, msg: str) -> None:
        data = msg.encode()
        self.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _stat(self, path: str) -> None:
        try:
            st = os.lstat(path)
            self.write(b"STAT" + struct.pack("<III", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                             int(st.st_mtime) & 0xFFFFFFFF))
        except OSError:
            self.write(b"STAT" + struct.pack("<III", 0, 0, 0))

    def _stat2(self, ident: bytes, path: str, follow: bool) -> None:
        try:
            st = os.stat(path) if follow else os.lstat(path)
            self.write(ident + struct.pack(
                "<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid,
                st.st_gid, st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))
        except OSError as e:
            self.write(ident + struct.pack("<IQQIIIIQqqq", e.errno or 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    def _sta2(self, path: str) -> None:
        self._stat2(b"STA2", path, True)

    def _lst2(self, path: str) -> None:
        self._stat2(b"LST2", path, False)

    def _list(self, path: str) -> None:
        try:
            names = os.listdir(path)
        except OSError:
            names = []
        for name in [".", "..", *names]:
            try:
                st = os.lstat(os.path.join(path, name))
            except OSError:
                continue
            raw = name.encode("utf-8", "surrogateescape")
            self.write(b"DENT" + struct.pack("<IIII", st.st_mode & 0xFFFFFFFF,
                                             st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF,
                                             len(raw)) + raw)
        self.write(b"DONE" + b"\0" * 16)

    def _send(self, spec: str) -> None:
        path, _, mode_s = spec.rpartition(",")
        try:
            mode = int(mode_s)
        except ValueError:
            path, mode = spec, 0o100644
        error = None
        f = None
        chunks: list[bytes] = []
        is_link = (mode & 0o170000) == 0o120000
        try:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            if not is_link:
                if os.path.isdir(path):
                    raise IsADirectoryError(21, "Is a directory")
                tmp = f"{path}.adbd-standin-{os.getpid()}-{threading.get_ident()}"
                f = open(tmp, "wb")  # noqa: SIM115  (closed after the DONE message)
        except OSError as e:
            error = f"couldn't create file: {e.strerror or e}"
        while True:
            ident, n = struct.unpack("<4sI", self._read(8))
            if ident == b"DATA":
                data = self._read(n)
                if error is None:
                    try:
                        if is_link:
                            chunks.append(data)
                        else:
                            f.write(data)
                    except OSError as e:
                        error = f"write failed: {e.strerror or e}"
            elif ident == b"DONE":
                mtime = n
                break
            else:
                error = error or f"invalid data message {ident!r}"
                break
        if f is not None:
            f.close()
            if error is None:
                try:
                    os.chmod(tmp, mode & 0o7777)
                    os.utime(tmp, (mtime, mtime))
                    os.replace(tmp, path)
                except OSError as e:
                    error = f"couldn't finish {path}: {e.strerror or e}"
            if error is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        elif is_link and error is None:
            try:
                if os.path.lexists(path):
                    os.unlink(path)
                os.symlink(b"".join(chunks).decode().rstrip("\0"), path)
            except OSError as e:
                error = f"couldn't create symlink: {e.strerror or e}"
        if error is None:
            self.write(b"OKAY" + b"\0" * 4)
        else:
            self._fail(error)

    def _recv(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                while True:
                    data = f.read(SYNC_DATA_MAX)
                    if not data:
                        break
                    self.write(b"DATA" + struct.pack("<I", len(data)) + data)
        except OSError as e:
            self._fail(f"open failed: {e.strerror or e}")
            return
        self.write(b"DONE" + b"\0" * 4)


class Connection:
    """One TCP connection from the adb server."""

    def __init__(self, server: Server, sock: socket.socket, addr):
        self.server, self.sock, self.addr = server, sock, addr
        self.send_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.streams_lock = threading.Lock()
        self.next_id = 1
        self.max_payload = 4096
        self.online = False
        self.dead = threading.Event()

    def send(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        header = struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF,
                             cmd ^ 0xFFFFFFFF)
        with self.send_lock:
            self.sock.sendall(header + data)

    def drop(self, local_id: int) -> None:
        with self.streams_lock:
            self.streams.pop(local_id, None)

    def recv_exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            b = self.sock.recv(n - got)
            if not b:
                raise Closed()
            parts.append(b)
            got += len(b)
        return b"".join(parts)

    def banner(self) -> bytes:
        p = self.server.props
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        props = "".join(f"{k}={p.get(k, '')};" for k in keys)
        return f"device::{props}features={','.join(self.server.features)}".encode()

    def run(self) -> None:
        log(f"connection from {self.addr}")
        try:
            while True:
                cmd, arg0, arg1, n, _crc, magic = struct.unpack("<6I", self.recv_exact(24))
                if magic != cmd ^ 0xFFFFFFFF:
                    log(f"bad magic from {self.addr}; closing")
                    break
                data = self.recv_exact(n) if n else b""
                self.handle(cmd, arg0, arg1, data)
        except (Closed, OSError):
            pass
        finally:
            self.dead.set()
            with self.streams_lock:
                streams = list(self.streams.values())
                self.streams.clear()
            for s in streams:
                s.on_remote_close()
            with contextlib.suppress(OSError):
                self.sock.close()
            log(f"connection from {self.addr} closed")

    def handle(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        mode = self.server.args
        if cmd == A_CNXN:
            log(f"CNXN version {arg0:#x} maxdata {arg1} {data[:80]!r}")
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            if mode.state == "offline":
                return  # never answer: the handshake does not complete
            if mode.auth == "off":
                self.go_online()
            else:
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            return
        if cmd == A_AUTH:
            if arg0 == AUTH_SIGNATURE:  # we hold no keys: never accept a signature
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            elif arg0 == AUTH_RSAPUBLICKEY:
                log("host sent its public key: the phone would now show 'Allow USB debugging?'")
                if mode.auth == "accept":
                    self.go_online()
            return
        if not self.online:
            return
        if cmd == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            self.open(arg0, service)
        elif cmd == A_WRTE:
            with self.streams_lock:
                s = self.streams.get(arg1)
            if s is None:
                return
            self.send(A_OKAY, arg1, arg0, b"")
            s.on_data(data)
        elif cmd == A_OKAY:
            with self.streams_lock:
                s = self.streams.get(arg1)
            if s is not None:
                s.ready.set()
        elif cmd == A_CLSE:
            with self.streams_lock:
                s = self.streams.pop(arg1, None)
            if s is not None:
                s.on_remote_close()

    def go_online(self) -> None:
        self.online = True
        self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.banner())

    def open(self, remote_id: int, service: str) -> None:
        log(f"OPEN {service!r}")
        with self.streams_lock:
            local_id = self.next_id
            self.next_id += 1
        try:
            if service.startswith("shell,") or service.startswith("shell:"):
                head, _, cmd = service.partition(":")
                args = head.split(",")[1:]
                v2 = "v2" in args and "shell_v2" in self.server.features
                if "v2" in args and not v2:
                    raise ValueError("shell v2 not supported by this stand-in configuration")
                stream: Stream = self._register(ShellStream, local_id, remote_id, cmd, v2)
            elif service.startswith("exec:"):
                stream = self._register(ShellStream, local_id, remote_id, service[5:], False)
            elif service == "sync:":
                stream = self._register(SyncStream, local_id, remote_id)
            else:
                raise ValueError(f"unsupported service {service!r}")
        except ValueError as e:
            log(f"refusing {service!r}: {e}")
            self.send(A_CLSE, 0, remote_id, b"")
            return
        except OSError as e:  # OKAY was sent, then the service failed to start
            log(f"{service!r} failed to start: {e}")
            return
        del stream

    def _register(self, cls, local_id: int, remote_id: int, *args) -> Stream:
        # OKAY goes out before the service can write its first WRTE; this runs on the
        # reader thread, so no packet of the new stream is handled before it is registered
        self.send(A_OKAY, local_id, remote_id, b"")
        try:
            stream = cls(self, local_id, remote_id, *args)
        except Exception:
            self.send(A_CLSE, local_id, remote_id, b"")
            raise
        with self.streams_lock:
            self.streams[local_id] = stream
        return stream


class Server:
    def __init__(self, args):
        self.args = args
        self.props = dict(DEFAULT_PROPS)
        if args.props:
            with open(args.props) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#") and "=" in line:
                        k, v = line.split("=", 1)
                        self.props[k.strip()] = v.strip()
        for kv in args.prop:
            k, _, v = kv.partition("=")
            self.props[k] = v
        self.features = [f for f in FEATURES if not (f == "shell_v2" and args.no_shell_v2)]
        os.makedirs(os.path.dirname(args.props_out), exist_ok=True)
        with open(args.props_out, "w") as f:
            for k, v in sorted(self.props.items()):
                f.write(f"{k}={v}\n")
        env = {"PATH": f"{args.bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": "/data/local/tmp",
               "TMPDIR": "/data/local/tmp", "LANG": "C.UTF-8", "ANDROID_DATA": "/data",
               "EDGERNN_STANDIN_PROPS": args.props_out, "SHELL": "/bin/sh"}
        if os.environ.get("QEMU_CPU"):
            env["QEMU_CPU"] = os.environ["QEMU_CPU"]
        for kv in args.env:
            k, _, v = kv.partition("=")
            env[k] = v
        self.shell_env = env

    def serve(self) -> None:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.args.host, self.args.port))
        ls.listen(16)
        print(f"adbd_standin: listening on {self.args.host}:{self.args.port} (state "
              f"{self.args.state}, auth {self.args.auth}, features {','.join(self.features)})",
              file=sys.stderr, flush=True)
        if self.args.ready_file:
            with open(self.args.ready_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        while True:
            sock, addr = ls.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=Connection(self, sock, addr).run, daemon=True).start()


def _terminate(*_) -> None:
    for p in list(CHILDREN):
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    global VERBOSE
    ap = argparse.ArgumentParser(description="STAND-IN adb device daemon (not Android)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5555)
    ap.add_argument("--state", choices=["device", "offline"], default="device",
                    help="offline: never answer the host's CNXN")
    ap.add_argument("--auth", choices=["off", "never", "accept"], default="off",
                    help="never: stay 'unauthorized'; accept: accept the host's public key")
    ap.add_argument("--no-shell-v2", action="store_true",
                    help="do not offer shell_v2 (like Android < 7: no exit codes over adb shell)")
    ap.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--props", help="file of KEY=VALUE lines (build.prop style)")
    ap.add_argument("--props-out", default="/opt/edgernn-android-standin/run/default.prop",
                    help="where the stand-in getprop reads the properties")
    ap.add_argument("--bin-dir", default="/opt/edgernn-android-standin/bin",
                    help="first PATH entry for shell commands (stand-in getprop, taskset)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for shell commands")
    ap.add_argument("--ready-file", help="write the pid here once listening")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    signal.signal(signal.SIGTERM, _terminate)
    Server(args).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
