"""Can this Docker engine give containers NVIDIA GPUs? One answer for the doctor, the
catalog and the provisioners.

Docker hands GPUs to a container only through the NVIDIA container toolkit: an ``nvidia``
runtime registered in the daemon (or made the default), the runtime hook Docker's built-in
``--gpus`` support calls, or CDI specs naming ``nvidia.com/gpu``. The daemon reports its
runtimes and CDI folders in ``docker info``; the hook and the CDI files can only be seen
when the engine runs on this host.
"""

from __future__ import annotations

import glob
import os
import shutil
import threading
import time
from dataclasses import dataclass

import docker

NVIDIA_CDI_KIND = "nvidia.com/gpu"
DEFAULT_CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
TOOLKIT_BINARIES = ("nvidia-container-runtime-hook", "nvidia-container-cli")
RUNTIME_TTL = 60.0

_cache: dict[str, tuple[float, GpuRuntime]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class GpuRuntime:
    """How the engine exposes NVIDIA GPUs: ``kind`` "nvidia", "cdi" or None (it cannot).

    ``reachable`` is False when the engine did not answer ``docker info``.
    """

    kind: str | None
    detail: str = ""
    reachable: bool = True

    @property
    def supported(self) -> bool | None:
        """True/False, or None when the engine could not be asked."""
        return None if not self.reachable else self.kind is not None


def detect_runtime(client: docker.DockerClient) -> GpuRuntime:
    """The engine's NVIDIA support, cached for a minute per engine (``docker info`` is slow)."""
    key = _base_url(client)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit and now - hit[0] < RUNTIME_TTL:
        return hit[1]
    runtime = read_runtime(client)
    if runtime.reachable:  # an outage is not a fact about the engine
        with _cache_lock:
            _cache[key] = (now, runtime)
    return runtime


def read_runtime(client: docker.DockerClient) -> GpuRuntime:
    """Ask the engine now (uncached)."""
    try:
        info = client.info()
    except Exception as err:
        return GpuRuntime(None, f"docker info failed: {err}", reachable=False)
    runtimes = info.get("Runtimes") or {}
    if "nvidia" in runtimes or info.get("DefaultRuntime") == "nvidia":
        return GpuRuntime("nvidia", "nvidia runtime registered in the daemon")
    local = _local_engine(_base_url(client))
    if local:
        for binary in TOOLKIT_BINARIES:
            if shutil.which(binary):
                return GpuRuntime("nvidia", f"NVIDIA container toolkit installed ({binary})")
        folders = list(info.get("CDISpecDirs") or DEFAULT_CDI_DIRS)
        spec = _nvidia_cdi_spec(folders)
        if spec:
            return GpuRuntime("cdi", f"CDI spec {spec}")
    where = "" if local else " (a remote engine: only its registered runtimes can be seen)"
    return GpuRuntime(None, f"no NVIDIA runtime, container toolkit or CDI spec{where}")


def _base_url(client: docker.DockerClient) -> str:
    return str(getattr(getattr(client, "api", None), "base_url", ""))


def _local_engine(base_url: str) -> bool:
    return base_url.startswith(("http+unix://", "unix://")) or base_url == ""


def _nvidia_cdi_spec(folders: list[str]) -> str | None:
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "*"))):
            if not path.endswith((".json", ".yaml", ".yml")):
                continue
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    if NVIDIA_CDI_KIND in handle.read(65536):
                        return path
            except OSError:
                continue
    return None


def forget_runtimes() -> None:
    """Drop cached answers (tests, and a refresh the user asked for)."""
    with _cache_lock:
        _cache.clear()
