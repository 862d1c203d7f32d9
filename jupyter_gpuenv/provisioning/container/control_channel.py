"""Messages to a kernel over its control channel, which reaches it on any host."""

from __future__ import annotations

from typing import Any

from jupyter_client.manager import KernelManager


class ControlChannel:
    """A kernel's control socket, for an interrupt where a signal cannot reach the kernel
    (a Swarm node, the broker's engine). Opened at the first message and kept open until
    :meth:`close`: a socket closed at once may drop what it was given."""

    def __init__(self, km: KernelManager) -> None:
        self.km = km
        self._socket: Any = None

    def interrupt(self) -> None:
        if self._socket is None:
            self._socket = self.km.connect_control()
        self.km.session.send(self._socket, self.km.session.msg("interrupt_request", content={}))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
