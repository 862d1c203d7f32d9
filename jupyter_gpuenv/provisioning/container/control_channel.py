"""Messages to a kernel over its control channel, which reaches it on any host."""

from __future__ import annotations

from jupyter_client.manager import KernelManager

SEND_LINGER_MS = 1000


def interrupt(km: KernelManager) -> None:
    """An interrupt_request on the control channel, where a signal cannot reach the kernel
    (a Swarm node, the broker's engine)."""
    socket = km.connect_control()
    try:
        km.session.send(socket, km.session.msg("interrupt_request", content={}))
    finally:
        socket.close(linger=SEND_LINGER_MS)
