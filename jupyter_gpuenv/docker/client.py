"""One Docker client per process and engine address, failing fast with a clear reason.

The engine is ``c.GpuEnv.docker_host`` when the admin set it, else ``DOCKER_HOST`` (with
``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``), else the local socket. Clients are shared
(their connection pools too); a failed ping drops the client so the next call reconnects,
and a stopped daemon or a wrong address becomes "Docker daemon is not reachable at ..."
within seconds instead of a traceback from deep inside a container create.
"""

from __future__ import annotations

import os
import threading

import docker
from docker.errors import DockerException

from ..errors import DockerUnavailable

DEFAULT_HOST = "unix:///var/run/docker.sock"
API_TIMEOUT = 60
# Enough pooled connections for many kernels starting at once.
MAX_POOL_SIZE = 64
TLS_VARIABLES = ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")

_clients: dict[tuple[str, ...], docker.DockerClient] = {}
_lock = threading.Lock()


class DaemonUnreachable(DockerUnavailable):
    """The Docker daemon did not answer; the message names its address."""


def daemon_address(host: str | None = None) -> str:
    """The engine address in use: the configured one, else DOCKER_HOST, else the socket."""
    return host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _key(host: str | None) -> tuple[str, ...]:
    return (daemon_address(host), *(os.environ.get(n, "") for n in TLS_VARIABLES))


def docker_client(host: str | None = None, *, ping: bool = False) -> docker.DockerClient:
    """The shared client for ``host`` (None: DOCKER_HOST or the socket).

    ``ping`` checks that the engine answers now; when it does not, the client is dropped
    (the next call builds a new one) and DaemonUnreachable says why.
    """
    key = _key(host)
    with _lock:
        client = _clients.get(key)
    if client is None:
        environment = dict(os.environ, DOCKER_HOST=key[0])
        try:
            client = docker.from_env(
                environment=environment, timeout=API_TIMEOUT, max_pool_size=MAX_POOL_SIZE
            )
        except DockerException as err:
            raise DaemonUnreachable(unreachable_message(err, host)) from err
        with _lock:
            client = _clients.setdefault(key, client)
    if ping:
        try:
            client.ping()
        except Exception as err:
            forget(host)
            raise DaemonUnreachable(unreachable_message(err, host)) from err
    return client


def forget(host: str | None = None) -> None:
    """Drop the shared client of ``host`` (after an outage), so the next call reconnects."""
    with _lock:
        _clients.pop(_key(host), None)


def unreachable_message(err: BaseException, host: str | None = None) -> str:
    reason = (str(err).strip() or type(err).__name__).split("\n")[0][:300]
    return (
        f"Docker daemon is not reachable at {daemon_address(host)} ({reason}). Start Docker "
        "or fix c.GpuEnv.docker_host / DOCKER_HOST, then try again."
    )
