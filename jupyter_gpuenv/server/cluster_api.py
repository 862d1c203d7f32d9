"""REST: ``GET /gpuenv/api/cluster/kernels``: where this server's kernels run in swarm mode.

Swarm picks each kernel's node and GPUs; this lists them (service, node, node address, the
GPU ids Swarm assigned) for the panel and for admins, per kernel id.
"""

from __future__ import annotations

from typing import Any

from ..provisioning.kernel_status import kernel_placement
from .base import GpuEnvHandler, authorized, web


class ClusterKernelsHandler(GpuEnvHandler):
    """``GET /gpuenv/api/cluster/kernels``: this server's kernels with node and GPUs."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(cluster_kernels(self))


def cluster_kernels(handler: GpuEnvHandler) -> dict[str, Any]:
    """The scheduler and, per kernel Swarm placed, its service, node and GPU ids."""
    manager = handler.gpuenv.server.kernel_manager
    kernels: list[dict[str, Any]] = []
    for kernel_id in list(manager.list_kernel_ids()):
        try:
            kernel = manager.get_kernel(kernel_id)
        except KeyError:
            continue  # shut down meanwhile
        placement = kernel_placement(getattr(kernel, "provisioner", None))
        if placement is not None:
            kernels.append({"kernel_id": kernel_id, **placement})
    return {"scheduler": handler.gpuenv.config.scheduler, "kernels": kernels}


handlers = [(r"/gpuenv/api/cluster/kernels", ClusterKernelsHandler)]
