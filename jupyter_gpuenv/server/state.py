"""What the extension's handlers share: the services, the sampler, the GPU reclaimer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import GpuEnv
from ..environments.catalog import Catalog
from ..gpu.sampler import GpuSampler
from ..provisioning.warm.pools import WarmKernels
from ..services import Services
from .gpu_reclaimer import GpuIdleReclaimer


@dataclass
class ServerState:
    """What handlers reach through ``self.gpuenv``: the services and the server's sampler."""

    services: Services
    gpu_sampler: GpuSampler
    server: Any  # jupyter_server's ServerApp
    reclaimer: GpuIdleReclaimer | None = None
    warm: WarmKernels | None = None  # the warm kernel pools (c.GpuEnv.warm_kernels)

    @property
    def config(self) -> GpuEnv:
        return self.services.config

    @property
    def catalog(self) -> Catalog:
        return self.services.catalog
