"""REST: GPU status, ``GET /gpuenv/api/gpus`` (the shared sample, never a fresh NVML call)."""

from __future__ import annotations

from .base import GpuEnvHandler, authorized, web


class GpusHandler(GpuEnvHandler):
    """``GET /gpuenv/api/gpus``: the latest GPU sample, attributed to kernels, per user."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        sample = await self.gpuenv.gpu_sampler.current()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(sample.body)


handlers = [(r"/gpuenv/api/gpus", GpusHandler)]
