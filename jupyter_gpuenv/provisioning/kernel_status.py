"""One kernel as ``GET /gpuenv/api/kernels/{id}`` describes it.

Joins what the kernel manager knows (name, execution state, last activity), what the
provisioner holds (environment, container or process), this process's kernel history
(restarts, last exit, Docker's reach) and the GPU memory the latest sample attributes to
the kernel. No I/O: everything is in memory already.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..environments.model import Environment
from ..kernel.gpu_snapshot import GpuSnapshot
from .kernel_history import known_history


@dataclass
class KernelGpuUse:
    """GPU memory a kernel's processes hold on one GPU."""

    index: int
    uuid: str | None
    used_memory: int | None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "used_memory": self.used_memory}


def gpu_use_by_kernel(snapshot: GpuSnapshot | None) -> dict[str, list[KernelGpuUse]]:
    """kernel id -> its GPUs, summing the memory of all its processes per GPU."""
    found: dict[str, dict[int, KernelGpuUse]] = {}
    if snapshot is None or not snapshot.available:
        return {}
    for gpu in snapshot.gpus:
        for proc in gpu.processes:
            if not proc.kernel_id:
                continue
            per_gpu = found.setdefault(proc.kernel_id, {})
            use = per_gpu.setdefault(gpu.index, KernelGpuUse(gpu.index, gpu.uuid, None))
            if proc.used_memory is not None:
                use.used_memory = (use.used_memory or 0) + proc.used_memory
    return {k: sorted(v.values(), key=lambda u: u.index) for k, v in found.items()}


def last_activity(manager: Any) -> datetime | None:
    value = getattr(manager, "last_activity", None)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def idle_seconds(manager: Any, now: float | None = None) -> float | None:
    """Seconds since the kernel's last activity while it is not busy, else None."""
    if getattr(manager, "execution_state", None) == "busy":
        return 0.0
    activity = last_activity(manager)
    if activity is None:
        return None
    return max(0.0, (now if now is not None else time.time()) - activity.timestamp())


def describe_kernel(
    kernel_id: str,
    manager: Any,
    environments: list[Environment],
    gpus: list[KernelGpuUse],
) -> dict[str, Any]:
    """The REST body of one kernel."""
    provisioner = getattr(manager, "provisioner", None)
    environment_id = getattr(provisioner, "environment_id", None) or None
    env = next((e for e in environments if e.id == environment_id), None)
    container_id = getattr(provisioner, "container_id", None)
    brokered = bool(getattr(provisioner, "brokered", False))
    kind = None
    if environment_id:
        kind = "docker" if hasattr(provisioner, "container_id") else "local"
    history = known_history(kernel_id)
    unreachable = history.docker_unreachable_since if history else None
    activity = last_activity(manager)
    pid = getattr(provisioner, "pid", None)
    placement = kernel_placement(provisioner)
    return {
        "id": kernel_id,
        "name": getattr(manager, "kernel_name", None),
        "kind": kind,
        "environment": (
            {"id": env.id, "name": env.name, "kind": env.kind}
            if env
            else ({"id": environment_id, "name": None, "kind": None} if environment_id else None)
        ),
        "container": (
            {
                "id": container_id,
                "name": getattr(provisioner, "container_name", None),
                "image": getattr(provisioner, "image", None),
                "broker": brokered,
            }
            if container_id or brokered
            else None
        ),
        "service": placement["service"] if placement else None,
        "placement": placement,
        "pid": pid if isinstance(pid, int) and not (container_id or brokered) else None,
        "gpus": [use.to_json() for use in gpus],
        "execution_state": getattr(manager, "execution_state", None),
        "last_activity": activity.isoformat() if activity else None,
        "idle_seconds": _round(idle_seconds(manager)),
        "connection": "disconnected" if unreachable else "connected",
        "docker": {
            "reachable": unreachable is None,
            "reason": history.docker_reason if history and unreachable else None,
            "since": _iso(unreachable),
        },
        "restart_count": history.restart_count if history else 0,
        "last_exit": history.last_exit.to_json() if history and history.last_exit else None,
        "reclaim": dict(history.reclaim_warning) if history and history.reclaim_warning else None,
        "start_warning": _text(getattr(provisioner, "start_warning", None)),
    }


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _iso(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def kernel_placement(provisioner: object) -> dict[str, Any] | None:
    """Node and GPUs of a kernel that runs on another host; None for any other kernel."""
    placement = getattr(provisioner, "placement", None)
    found = placement() if callable(placement) else None
    return found if isinstance(found, dict) else None
