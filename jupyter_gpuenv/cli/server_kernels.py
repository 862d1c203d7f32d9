"""The kernels of the Jupyter servers running on this machine, for ``jupyter gpuenv gpus``.

The CLI samples NVML itself, but which process is which kernel (a local kernel's PID)
and how long a kernel has been idle only its server knows: each running server (found
through the runtime folder, as ``jupyter server list`` does) is asked for
``GET /gpuenv/api/kernels`` with its own token, briefly; a server that does not answer
is skipped.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..gpu.attribution import KernelRecord

ASK_TIMEOUT = 2.0


@dataclass
class ServerKernel:
    """One kernel as its server describes it."""

    record: KernelRecord
    idle_seconds: float | None
    execution_state: str | None
    reclaim_message: str | None


def running_servers() -> list[dict[str, Any]]:
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return []
    return list(list_running_servers())


def server_kernels(servers: list[dict[str, Any]] | None = None) -> list[ServerKernel]:
    """Every kernel the running servers with jupyter_gpuenv describe."""
    found: list[ServerKernel] = []
    for info in running_servers() if servers is None else servers:
        url = str(info.get("url") or "")
        if not url:
            continue
        request = urllib.request.Request(
            url.rstrip("/") + "/gpuenv/api/kernels",
            headers={"Authorization": f"token {info.get('token', '')}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=ASK_TIMEOUT) as response:  # noqa: S310
                body = json.loads(response.read())
        except (OSError, ValueError):
            continue
        for kernel in body.get("kernels") or []:
            found.append(_server_kernel(kernel))
    return found


def _server_kernel(kernel: dict[str, Any]) -> ServerKernel:
    environment = kernel.get("environment") or {}
    container = kernel.get("container") or {}
    reclaim = kernel.get("reclaim") or {}
    return ServerKernel(
        record=KernelRecord(
            kernel_id=str(kernel.get("id")),
            environment_id=environment.get("id"),
            container_id=container.get("id"),
            pid=kernel.get("pid") if isinstance(kernel.get("pid"), int) else None,
        ),
        idle_seconds=kernel.get("idle_seconds"),
        execution_state=kernel.get("execution_state"),
        reclaim_message=reclaim.get("message"),
    )
