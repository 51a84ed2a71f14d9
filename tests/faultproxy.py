"""A TCP proxy that injects real network faults: it forwards bytes between a client and a
server and can cut every connection at once, or once N bytes have gone upstream."""

from __future__ import annotations

import contextlib
import socket
import threading


class FaultProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.cut_after: int | None = None  # cut when this many bytes went upstream
        self.sent_up = 0
        self.cuts = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            s = socket.create_connection(self.upstream)
            with self.lock:
                self.conns += [c, s]
            threading.Thread(target=self._pump, args=(c, s, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(16384):
                if up:
                    with self.lock:
                        self.sent_up += len(data)
                        over = self.cut_after is not None and self.sent_up >= self.cut_after
                    if over:
                        self.cut_after = None
                        self.cut_now()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut_now(self) -> None:
        """Drop every open connection (like a cable pulled or a Wi-Fi drop)."""
        with self.lock:
            conns, self.conns = self.conns, []
            self.cuts += 1
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.cut_now()
