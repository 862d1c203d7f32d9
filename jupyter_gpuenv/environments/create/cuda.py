"""Which CUDA version a create solves for (the ``__cuda`` virtual package).

conda-based tools read the driver on the machine that builds; on a CPU node that means
no ``__cuda``, and the solver silently picks CPU builds. So the version is chosen here,
in this order: the request (``--cuda``, the REST field), ``c.GpuEnv.environment_create_cuda``,
the host driver's CUDA version read through NVML. ``none`` means a machine without CUDA.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ...kernel.nvml import NvmlAdapter
from .spec import InvalidEnvironmentFile

NO_CUDA = "none"
VERSION = re.compile(r"^\d+(\.\d+){0,2}$")


@dataclass(frozen=True)
class CudaChoice:
    """``version`` None: no ``__cuda``; ``source`` says where it came from (for the report)."""

    version: str | None
    source: str

    def describe(self) -> str:
        if self.version is None:
            return f"no CUDA ({self.source})"
        return f"CUDA {self.version} ({self.source})"


def host_cuda_version() -> str | None:
    """The driver's CUDA version from NVML, None without a driver (never raises)."""
    with NvmlAdapter() as nvml:
        return nvml.read().cuda_driver_version


def choose_cuda(
    requested: str | None,
    configured: str,
    host: Callable[[], str | None] = host_cuda_version,
) -> CudaChoice:
    """The version to solve for; a malformed one is refused before anything runs."""
    given = ((requested, "requested"), (configured, "c.GpuEnv.environment_create_cuda"))
    for value, source in given:
        if value is None or not str(value).strip():
            continue
        text = str(value).strip().lower()
        if text == NO_CUDA:
            return CudaChoice(None, source)
        if not VERSION.match(text):
            raise InvalidEnvironmentFile(
                f"CUDA version {value!r} ({source}) is not a version such as 12.4, or 'none'"
            )
        return CudaChoice(text, source)
    found = host()
    if found:
        return CudaChoice(found, "this host's driver")
    return CudaChoice(None, "no NVIDIA driver on this host")


def driver_too_old(choice: CudaChoice, host_version: str | None) -> str | None:
    """A warning when the chosen CUDA is newer than this host's driver can run."""
    if choice.version is None or choice.source == "this host's driver":
        return None
    if host_version is None:
        return (
            f"built for CUDA {choice.version}; this host has no NVIDIA driver, so its CUDA "
            "builds run only on a GPU machine"
        )
    if _key(choice.version) > _key(host_version):
        return (
            f"built for CUDA {choice.version}, newer than this host's driver supports "
            f"(CUDA {host_version}): its CUDA builds run only where the driver is newer"
        )
    return None


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2])
