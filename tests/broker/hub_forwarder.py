"""A TCP forwarder to the Hub's API that writes down each HTTP request passing through.

Put between a broker and the Hub (the broker's ``JUPYTERHUB_API_URL`` names the
forwarder), it shows exactly which Hub lookups the broker made: every byte goes on to the
real Hub unchanged, and the request lines of the broker's stream are recorded as they
pass. Threads only; stopped with ``close()``.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from typing import Any


class _Connection(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            upstream = socket.create_connection(self.server.target, timeout=30)
        except OSError:
            return
        back = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
        back.start()
        head = bytearray()
        body_left = 0
        while True:
            try:
                chunk = self.request.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            upstream.sendall(chunk)
            data = bytes(chunk)
            while data:
                if body_left:
                    used = min(body_left, len(data))
                    body_left, data = body_left - used, data[used:]
                    continue
                head += data
                data = b""
                end = head.find(b"\r\n\r\n")
                if end < 0:
                    break
                body_left = self.server.record(bytes(head[:end]))
                data, head = bytes(head[end + 4 :]), bytearray()
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)
        back.join(timeout=30)
        upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Connection)
        self.target = target
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def record(self, head: bytes) -> int:
        """Note one request's method and path; returns its body's length."""
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.rpartition(" ")[0]
        with self.lock:
            self.requests.append((method, path))
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        return length


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


class HubForwarder:
    """Forwards 127.0.0.1:<port> to the Hub at ``target``; ``requests()`` lists what passed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._server = _Server(target)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def requests(self) -> list[tuple[str, str]]:
        with self._server.lock:
            return list(self._server.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> HubForwarder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
