"""GPU selection -> Docker device requests, and whether the host can honour them.

Docker hands GPUs to a container only through the NVIDIA container toolkit: the
``nvidia`` runtime registered in the daemon, the runtime hook Docker's built-in ``--gpus``
support calls, or CDI specs (``nvidia.com/gpu=...``). Without any of them a device request
fails the container create with an obscure error, so the decision is made here:
"all" starts without GPUs (and says so), explicit ids fail with a clear message.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest

from .base import KernelStartFailed

CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
RUNTIME_TTL = 60.0
DRIVER_CAPABILITIES = "compute,utility"

_runtime_cache: dict[str, tuple[float, GpuRuntime]] = {}
_runtime_lock = threading.Lock()


@dataclass(frozen=True)
class GpuRuntime:
    """How this Docker host exposes NVIDIA GPUs: "nvidia", "cdi" or None."""

    kind: str | None
    detail: str = ""


@dataclass
class GpuPlan:
    """Device requests and variables for one container, plus lines for the start log."""

    device_requests: list[Any] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def detect_runtime(client: Any) -> GpuRuntime:
    """NVIDIA support of the daemon, cached for a minute (``docker info`` is slowish)."""
    key = str(getattr(client.api, "base_url", ""))
    now = time.monotonic()
    with _runtime_lock:
        hit = _runtime_cache.get(key)
    if hit and now - hit[0] < RUNTIME_TTL:
        return hit[1]
    runtime = _detect_runtime(client)
    with _runtime_lock:
        _runtime_cache[key] = (now, runtime)
    return runtime


def _detect_runtime(client: Any) -> GpuRuntime:
    try:
        info = client.info()
    except Exception as err:
        return GpuRuntime(None, f"docker info failed: {err}")
    if "nvidia" in (info.get("Runtimes") or {}):
        return GpuRuntime("nvidia", "nvidia runtime registered in the daemon")
    if shutil.which("nvidia-container-runtime-hook") or shutil.which("nvidia-container-cli"):
        return GpuRuntime("nvidia", "NVIDIA container toolkit installed")
    for folder in CDI_DIRS:
        for spec in sorted(Path(folder).glob("*")) if os.path.isdir(folder) else []:
            try:
                if "nvidia.com/gpu" in spec.read_text(errors="replace"):
                    return GpuRuntime("cdi", f"CDI spec {spec}")
            except OSError:
                continue
    return GpuRuntime(None, "no NVIDIA runtime, container toolkit or CDI spec on this host")


def plan_gpus(gpus: str | list[str], runtime: GpuRuntime) -> GpuPlan:
    """Device requests for the policy's GPU selection ("all", "none" or ids)."""
    plan = GpuPlan()
    if gpus == "none" or not gpus:
        plan.environment["NVIDIA_VISIBLE_DEVICES"] = "void"
        return plan
    if runtime.kind is None:
        if gpus == "all":
            plan.environment["NVIDIA_VISIBLE_DEVICES"] = "void"
            plan.notes.append(
                f"GPUs requested (all) but Docker cannot provide them ({runtime.detail}); "
                "starting the kernel without GPUs"
            )
            return plan
        raise KernelStartFailed(
            f"GPUs {', '.join(gpus)} are configured for this environment but Docker cannot "
            f"provide GPUs ({runtime.detail}). Install the NVIDIA container toolkit and "
            'restart Docker, or set gpus to "none" for this environment.'
        )
    ids = None if gpus == "all" else [str(g) for g in gpus]
    if runtime.kind == "cdi":
        names = ["all"] if ids is None else ids
        plan.device_requests.append(
            DeviceRequest(driver="cdi", device_ids=[f"nvidia.com/gpu={n}" for n in names])
        )
    elif ids is None:
        plan.device_requests.append(DeviceRequest(count=-1, capabilities=[["gpu"]]))
    else:
        plan.device_requests.append(DeviceRequest(device_ids=ids, capabilities=[["gpu"]]))
    plan.environment["NVIDIA_VISIBLE_DEVICES"] = "all" if ids is None else ",".join(ids)
    plan.environment["NVIDIA_DRIVER_CAPABILITIES"] = DRIVER_CAPABILITIES
    return plan


def runtime_annotator(config: Any, log: Any = None) -> Callable[[list[Any]], None]:
    """A catalog annotator adding a problem to Docker envs whose GPUs cannot be honoured."""

    def annotate(environments: list[Any]) -> None:
        docker_envs = [e for e in environments if e.kind == "docker"]
        if not docker_envs:
            return
        from .daemon import DaemonUnreachable, docker_client

        try:
            runtime = detect_runtime(docker_client())
        except DaemonUnreachable:
            return  # the catalog already reports Docker as down
        if runtime.kind is not None:
            return
        for env in docker_envs:
            gpus = (env.settings or {}).get("gpus", config.gpus)
            problem = gpu_problem(gpus, runtime)
            if problem and problem not in env.problems:
                env.problems.append(problem)

    return annotate


def gpu_problem(gpus: Any, runtime: GpuRuntime) -> str | None:
    """The catalog line for an environment whose GPU setting this host cannot honour."""
    if runtime.kind is not None or gpus in ("none", [], None):
        return None
    if gpus == "all":
        return (
            "Docker has no NVIDIA GPU support on this host (no nvidia runtime, container "
            "toolkit or CDI spec): kernels start without GPUs"
        )
    listed = gpus if isinstance(gpus, str) else ", ".join(str(g) for g in gpus)
    return (
        f"GPUs {listed} are configured but Docker has no NVIDIA GPU support on this host: "
        "kernels cannot start"
    )
