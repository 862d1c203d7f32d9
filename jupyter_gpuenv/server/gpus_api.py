"""REST: GPU status, ``GET /gpuenv/api/gpus`` (the shared sample, never a fresh NVML call)."""

from __future__ import annotations

from typing import Any

from ..gpu.sampler import GpuSampler, build_gpu_sampler
from .base import GpuEnvHandler, authorized, web

SAMPLER_SERVICE = "gpu_sampler"


def install(state: Any, log: Any = None) -> None:
    """Server wiring: one sampler for all clients; its thread starts on the first request."""
    state.services[SAMPLER_SERVICE] = build_gpu_sampler(state.config, state.server, log=log)


class GpusHandler(GpuEnvHandler):
    """``GET /gpuenv/api/gpus``: the latest GPU sample, attributed to kernels, per user."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        sampler: GpuSampler = self.gpuenv.services[SAMPLER_SERVICE]
        sample = await sampler.current()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(sample.body)


handlers = [(r"/gpuenv/api/gpus", GpusHandler)]
