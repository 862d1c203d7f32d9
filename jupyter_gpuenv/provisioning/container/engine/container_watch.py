"""What the Docker provisioner reads and marks about its container beyond running/stopped.

* Why it ended: the container's State (ExitCode, OOMKilled), its memory limit and last
  log lines, read before the container is removed and kept in the kernel history.
* Whether Docker answers: an unreachable daemon is a state of the kernel
  ("disconnected", shown by the REST API and the kernel model), never a death; the
  kernel re-attaches when Docker answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import requests
from docker import DockerClient
from docker.errors import APIError, DockerException, NotFound

from ....docker.client import DaemonUnreachable, forget, unreachable_message
from ... import kernel_history

# The Docker API did not answer (daemon stopped, socket gone): a state, not a kernel death.
UNREACHABLE = (DaemonUnreachable, requests.RequestException, DockerException)


async def read_container_exit(
    client: DockerClient, container_id: str, requested: bool
) -> kernel_history.KernelExit | None:
    """How the container ended; None when Docker cannot say now."""
    try:
        attrs = await asyncio.to_thread(client.api.inspect_container, container_id)
        state = attrs.get("State") or {}
        logs = b""
        if not state.get("Running"):
            logs = await asyncio.to_thread(
                client.api.logs,
                container_id,
                stdout=True,
                stderr=True,
                tail=kernel_history.LOG_LINES,
            )
    except NotFound:
        return kernel_history.vanished_exit()
    except (APIError, *UNREACHABLE):
        return None
    if state.get("Running"):
        state = {"ExitCode": None}  # stopped by the removal that follows
    memory = (attrs.get("HostConfig") or {}).get("Memory") or None
    text = logs.decode(errors="replace") if isinstance(logs, bytes) else str(logs)
    return kernel_history.container_exit(state, memory, text, requested)


def mark_unreachable(
    kernel_id: str, err: BaseException, docker_host: str | None, km: Any, log: logging.Logger
) -> str:
    """Mark the kernel disconnected (logged once per outage); the message says why."""
    history = kernel_history.history_of(kernel_id)
    message = (
        err.message if isinstance(err, DaemonUnreachable) else unreachable_message(err, docker_host)
    )
    if history.docker_unreachable_since is None:
        history.docker_unreachable_since = time.time()
        log.warning("Kernel %s: disconnected: %s", kernel_id, message)
        forget(docker_host)  # the shared client reconnects once Docker is back
    history.docker_reason = message
    if km is not None and getattr(km, "execution_state", None) != "disconnected":
        km.execution_state = "disconnected"
    return message


def mark_reachable(kernel_id: str, km: Any, log: logging.Logger, container: str | None) -> None:
    """Docker answers again: the kernel is connected to its (surviving) container."""
    history = kernel_history.known_history(kernel_id)
    if history is None or history.docker_unreachable_since is None:
        return
    log.info("Kernel %s: Docker answers again; container %s re-attached", kernel_id, container)
    history.docker_unreachable_since = None
    history.docker_reason = None
    if km is not None and getattr(km, "execution_state", None) == "disconnected":
        km.execution_state = "idle"
