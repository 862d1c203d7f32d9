"""REST: what happened to a kernel, ``GET /gpuenv/api/kernels[/{kernel_id}]``.

Environment, container or process, GPUs and memory held, execution state and idle time,
restart count, the last exit (code, signal, out-of-memory kill, reason) and whether
Docker can be reached; for every kernel of this server, gpuenv's or not.
"""

from __future__ import annotations

from typing import Any

from ..provisioning.kernel_status import describe_kernel, gpu_use_by_kernel
from .base import GpuEnvHandler, authorized, web


class KernelsHandler(GpuEnvHandler):
    """``GET /gpuenv/api/kernels``: every kernel of this server."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        kernels = await kernel_models(self, None)
        reclaimer = self.gpuenv.reclaimer
        self.set_header("Cache-Control", "no-store")
        self.write_json(
            {
                "kernels": kernels,
                "gpu_idle_timeout": self.gpuenv.config.gpu_idle_timeout or None,
                "reclaimed": list(reclaimer.reclaimed) if reclaimer else [],
            }
        )


class KernelHandler(GpuEnvHandler):
    """``GET /gpuenv/api/kernels/{kernel_id}``."""

    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        (kernel,) = await kernel_models(self, kernel_id)
        self.set_header("Cache-Control", "no-store")
        self.write_json(kernel)


async def kernel_models(handler: GpuEnvHandler, kernel_id: str | None) -> list[dict[str, Any]]:
    """The described kernels (one, or all); 404 for an unknown id."""
    mkm = handler.kernel_manager
    ids = list(mkm.list_kernel_ids())
    if kernel_id is not None:
        if kernel_id not in ids:
            raise web.HTTPError(404, f"No kernel with id {kernel_id!r} on this server.")
        ids = [kernel_id]
    sample = await handler.gpuenv.gpu_sampler.current()
    uses = gpu_use_by_kernel(sample.snapshot)
    environments = handler.gpuenv.catalog.cached_environments()
    models = []
    for kid in ids:
        try:
            manager = mkm.get_kernel(kid)
        except KeyError:
            continue
        models.append(describe_kernel(kid, manager, environments, uses.get(kid, [])))
    if kernel_id is not None and not models:
        raise web.HTTPError(404, f"No kernel with id {kernel_id!r} on this server.")
    return models


KERNEL_ID = r"(?P<kernel_id>[A-Za-z0-9_-]+)"

handlers = [
    (r"/gpuenv/api/kernels", KernelsHandler),
    (rf"/gpuenv/api/kernels/{KERNEL_ID}", KernelHandler),
]
