"""A package index that takes connections and never answers, for cancel tests: a pip
reading it waits (pip's own timeout is 15 s) until something stops it."""

from __future__ import annotations

import socket
import threading


class StalledIndex:
    """Listens on 127.0.0.1; ``url`` is its find-links address."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/simple/"
        self.taken: list[socket.socket] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        try:
            while True:
                conn, _ = self.listener.accept()
                self.taken.append(conn)
        except OSError:
            return

    def closed_by_pip(self, timeout: float) -> bool:
        """Whether the waiting pip's connection was closed from its side."""
        conn = self.taken[0]
        conn.settimeout(timeout)
        try:
            while conn.recv(4096):
                pass  # pip's request
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.listener.close()
        for conn in self.taken:
            conn.close()
