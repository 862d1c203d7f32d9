"""Reading the real host for the doctor: NVML through the GPU adapter, Docker's runtimes.

Server and CLI side (it may import docker-py, lazily). ``HostProbe`` caches one reading
for ``ttl`` seconds: a catalog scan annotates every environment against the same host,
and a driver does not change between two requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from docker import DockerClient

from ..docker.client import docker_client
from ..docker.nvidia_runtime import read_runtime
from ..errors import DockerUnavailable
from ..gpu_set import GpuSet
from ..kernel.host_info import HostInfo
from ..kernel.nvml import NvmlAdapter


def read_gpu_status(adapter: NvmlAdapter | None = None) -> dict[str, Any]:
    """One NVML reading as the GPU status JSON (never raises for NVML trouble)."""
    if adapter is not None:
        return adapter.read().to_json()
    with NvmlAdapter() as own:
        return own.read().to_json()


def restrict_to_grant(status: dict[str, Any], grant: GpuSet) -> dict[str, Any]:
    """The GPU status as one JupyterHub user sees it: only the GPUs granted to them.

    A GPU counts as granted when its index, its UUID or one of its MIG devices is.
    """
    if grant.is_all or not status.get("gpus"):
        return status
    kept = [
        gpu
        for gpu in status["gpus"]
        if any(
            grant.allows(gpu.get("index"), uuid)
            for uuid in [gpu.get("uuid")] + [m.get("uuid") for m in gpu.get("mig_devices") or []]
        )
    ]
    restricted = {**status, "gpus": kept}
    if not kept:
        restricted["available"] = False
        restricted["reason"] = f"no GPU is granted to this user ({grant.source or 'grant'})"
    return restricted


def docker_nvidia_runtime(
    client: DockerClient | None = None, docker_host: str | None = None
) -> bool | None:
    """Whether containers of the Docker engine can get NVIDIA GPUs; None when it is down.

    The same detector the provisioners use (:mod:`jupyter_gpuenv.docker.nvidia_runtime`),
    uncached: ``HostProbe`` keeps the reading for its own interval.
    """
    if client is None:
        try:
            client = docker_client(docker_host)
        except DockerUnavailable:
            return None
    return read_runtime(client).supported


class HostProbe:
    """The real host as a ``HostInfo``, read at most once per ``ttl`` seconds.

    ``gpu_status`` and ``docker_runtime`` are the two readers (defaults: NVML through the
    GPU module's adapter, ``docker info``); tests and the server may pass their own, e.g.
    an adapter over a fake NVML. ``grant`` narrows the GPUs to a JupyterHub user's.
    """

    def __init__(
        self,
        gpu_status: Callable[[], dict[str, Any]] | None = None,
        docker_runtime: Callable[[], bool | None] | None = None,
        ttl: float = 60.0,
        grant: GpuSet | None = None,
    ) -> None:
        self._gpu_status = gpu_status or read_gpu_status
        self._grant = grant or GpuSet()
        self._docker_runtime = docker_runtime or docker_nvidia_runtime
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: HostInfo | None = None
        self._read_at = 0.0

    def __call__(self) -> HostInfo:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._read_at >= self._ttl:
                status = restrict_to_grant(self._gpu_status(), self._grant)
                self._cached = HostInfo.from_gpu_status(
                    status, docker_nvidia_runtime=self._docker_runtime()
                )
                self._read_at = now
            return self._cached

    def invalidate(self) -> None:
        """Forget the cached reading (a catalog refresh asked by the user re-reads)."""
        with self._lock:
            self._cached = None
