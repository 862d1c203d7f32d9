"""The host side of a compatibility check: driver, CUDA driver version, GPUs, Docker.

A ``HostInfo`` is plain data. The real one is read by ``host_probe`` (NVML and
``docker info``) or converted from the GPU status JSON; a hypothetical one comes from the
``--driver-version``/``--compute-capability`` flags. Standard library only, Python >= 3.8.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import versions as v

DRIVER_VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}$")


@dataclass
class GpuInfo:
    index: int | None = None
    name: str | None = None
    uuid: str | None = None
    compute_capability: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "compute_capability": self.compute_capability,
        }


@dataclass
class HostInfo:
    """What the checks need to know about a machine.

    ``has_gpu`` defaults to "at least one GPU listed"; a hypothetical host built from a
    driver version alone still has a GPU. ``docker_nvidia_runtime`` is None when Docker
    could not be asked. ``reason`` says why GPU facts are missing (NVML unavailable ...).
    """

    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    has_gpu: bool | None = None
    docker_nvidia_runtime: bool | None = None
    hypothetical: bool = False
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.has_gpu is None:
            self.has_gpu = bool(self.gpus)
        if self.cuda_driver_version is None and self.driver_version:
            self.cuda_driver_version = v.cuda_version_for_driver(self.driver_version)

    @classmethod
    def hypothetical_host(
        cls,
        driver_version: str | None = None,
        compute_capability: str | None = None,
        docker_nvidia_runtime: bool | None = None,
    ) -> HostInfo:
        """A host described by flags (``--driver-version``, ``--compute-capability``)."""
        gpus = []
        if compute_capability is not None:
            cc = v.parse_compute_capability(compute_capability)
            if cc is None:
                raise ValueError(
                    f"compute capability must look like 8.6, not {compute_capability!r}"
                )
            gpus.append(
                GpuInfo(index=0, name="hypothetical GPU", compute_capability=v.format_cc(cc))
            )
        if driver_version is not None and not DRIVER_VERSION_RE.match(driver_version):
            raise ValueError(f"driver version must look like 535.54.03, not {driver_version!r}")
        return cls(
            driver_version=driver_version,
            gpus=gpus,
            has_gpu=bool(gpus) or driver_version is not None,
            docker_nvidia_runtime=docker_nvidia_runtime,
            hypothetical=True,
        )

    @classmethod
    def from_gpu_status(
        cls, status: Mapping[str, Any], docker_nvidia_runtime: bool | None = None
    ) -> HostInfo:
        """From the GPU status JSON (``GET /gpuenv/api/gpus``, ``%gpuinfo --json``)."""
        gpus = []
        for gpu in status.get("gpus") or []:
            cc = v.parse_compute_capability(gpu.get("compute_capability"))
            gpus.append(
                GpuInfo(
                    index=gpu.get("index"),
                    name=gpu.get("name"),
                    uuid=gpu.get("uuid"),
                    compute_capability=v.format_cc(cc) if cc else None,
                )
            )
        cuda = v.major_minor(status.get("cuda_driver_version"))
        return cls(
            driver_version=status.get("driver_version"),
            cuda_driver_version=v.format_major_minor(cuda) if cuda else None,
            gpus=gpus,
            docker_nvidia_runtime=docker_nvidia_runtime,
            reason=None if status.get("available", bool(gpus)) else status.get("reason"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "hypothetical": self.hypothetical,
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "has_gpu": self.has_gpu,
            "gpus": [gpu.to_json() for gpu in self.gpus],
            "docker_nvidia_runtime": self.docker_nvidia_runtime,
            "reason": self.reason,
        }
