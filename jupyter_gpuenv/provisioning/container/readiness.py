"""When is a container kernel ready, and why did it not get there?

The provisioner returns from ``launch_kernel`` only once every port of the connection
file accepts connections, which is what the client waits for anyway. Meanwhile the
container is watched: if it exits, its last log lines explain why, at once, instead of
the client timing out minutes later without a reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from docker import DockerClient
from docker.models.containers import Container

from ..kernel_errors import KernelStartFailed

READY_POLL = 0.05
STATE_CHECK_EVERY = 5  # readiness polls between two container state checks
LOG_TAIL = 20
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


async def wait_until_ready(
    client: DockerClient,
    container: Container,
    connection_info: Mapping[str, Any],
    timeout: float,
    image: str,
) -> None:
    """Until every kernel port accepts connections; fail fast if the container exits."""
    deadline = time.monotonic() + timeout
    ip = str(connection_info.get("ip") or "127.0.0.1")
    waiting = [int(connection_info[name]) for name in PORT_NAMES]
    polls = 0
    while waiting:
        waiting = [port for port in waiting if not await port_open(ip, port)]
        if not waiting:
            return
        polls += 1
        if polls % STATE_CHECK_EVERY == 1:
            state = await asyncio.to_thread(container_state, client, str(container.id))
            if not state.get("Running"):
                logs = await asyncio.to_thread(log_tail, container)
                raise KernelStartFailed(
                    f"The kernel container of {image} exited with code "
                    f"{state.get('ExitCode')} before the kernel was ready. Last log "
                    f"lines:\n{logs}"
                )
        if time.monotonic() > deadline:
            logs = await asyncio.to_thread(log_tail, container)
            raise KernelStartFailed(
                f"The kernel in {image} was not ready within {timeout:g} s "
                f"(c.GpuEnv.kernel_start_timeout). Last log lines:\n{logs}"
            )
        await asyncio.sleep(READY_POLL)


async def port_open(ip: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 0.5)
    except (TimeoutError, OSError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


def container_state(client: DockerClient, container_id: str) -> dict[str, Any]:
    return client.api.inspect_container(container_id).get("State") or {}


def log_tail(container: Container) -> str:
    try:
        raw = container.logs(stdout=True, stderr=True, tail=LOG_TAIL)
    except Exception as err:
        return f"(logs unavailable: {err})"
    text = raw.decode(errors="replace").rstrip()
    return text or "(no output)"
