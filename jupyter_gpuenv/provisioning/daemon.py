"""One Docker client per process and daemon address, failing fast with a clear reason.

Kernel starts check the daemon with a ping first, so a stopped daemon or a wrong
DOCKER_HOST becomes "Docker daemon is not reachable at ..." within a second instead of
a traceback from deep inside a container create.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import docker
from docker.errors import DockerException

from ..errors import DockerUnavailable

API_TIMEOUT = 60
# Enough pooled connections for many kernels starting at once.
MAX_POOL_SIZE = 64

_clients: dict[tuple[str, ...], Any] = {}
_lock = threading.Lock()


class DaemonUnreachable(DockerUnavailable):
    """The Docker daemon did not answer; the message names its address."""


def daemon_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _key() -> tuple[str, ...]:
    return tuple(
        os.environ.get(n, "") for n in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
    )


def docker_client(ping: bool = False) -> Any:
    """The shared client for the current DOCKER_* settings; ``ping`` re-checks liveness."""
    key = _key()
    with _lock:
        client = _clients.get(key)
    if client is None:
        try:
            client = docker.from_env(timeout=API_TIMEOUT, max_pool_size=MAX_POOL_SIZE)
        except DockerException as err:
            raise DaemonUnreachable(_unreachable(err)) from err
        with _lock:
            client = _clients.setdefault(key, client)
        return client
    if ping:
        try:
            client.ping()
        except Exception as err:
            with _lock:
                _clients.pop(key, None)
            raise DaemonUnreachable(_unreachable(err)) from err
    return client


def _unreachable(err: Exception) -> str:
    reason = str(err).split("\n")[0]
    return (
        f"Docker daemon is not reachable at {daemon_address()} ({reason}). Start Docker "
        "or fix DOCKER_HOST, then start the kernel again."
    )
