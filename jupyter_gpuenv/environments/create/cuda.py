"""Which CUDA version a create solves for (the ``__cuda`` virtual package).

conda-based tools read the driver on the machine that builds; on a CPU node that means
no ``__cuda``, and the solver silently picks CPU builds. So the version is chosen here,
in this order: the request (``--cuda``, the REST field), ``c.GpuEnv.environment_create_cuda``,
the host driver's CUDA version read through NVML. ``none`` means a machine without CUDA.

Before solving, a version other than the driver's is checked against the doctor's driver
table (kernel/cuda_table.py: the minimum driver of each CUDA release, and the floor of
minor-version compatibility), and a warning says when its CUDA builds cannot run here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ...kernel.nvml import NvmlAdapter
from ...kernel.versions import minimum_driver, minor_compatibility_floor, version_at_least
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


def host_driver_version() -> str | None:
    """The NVIDIA driver's version (``535.104.05``) from NVML, None without one."""
    with NvmlAdapter() as nvml:
        return nvml.read().driver_version


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


def driver_too_old(
    choice: CudaChoice,
    host_version: str | None,
    host_driver: Callable[[], str | None] = host_driver_version,
) -> str | None:
    """A warning when the chosen CUDA's builds cannot run on this host's driver.

    The driver each CUDA release needs comes from the doctor's table; ``host_driver`` is
    only read when there is something to warn about.
    """
    if choice.version is None or choice.source == "this host's driver":
        return None
    needed = minimum_driver(choice.version)
    needs = f"NVIDIA driver >= {needed}" if needed else "a driver that supports it"
    if host_version is None:
        return (
            f"built for CUDA {choice.version}; this host has no NVIDIA driver, so its CUDA "
            f"builds run only on a GPU machine with {needs}"
        )
    if _key(choice.version) <= _key(host_version):
        return None
    driver = host_driver()
    has = f"driver {driver} (CUDA {host_version})" if driver else f"CUDA {host_version}"
    text = (
        f"built for CUDA {choice.version}, newer than this host's driver supports: CUDA "
        f"{choice.version} needs {needs} (the doctor's driver table), this host has {has}; "
        "its CUDA builds will not run here until the driver is updated"
    )
    floor = minor_compatibility_floor(choice.version)
    same_major = _key(choice.version)[0] == _key(host_version)[0]
    if floor and driver and same_major and version_at_least(driver, floor):
        text += (
            f" (CUDA {_key(choice.version)[0]}.x minor-version compatibility, driver >= "
            f"{floor}, may run them with a limited feature set: no PTX JIT, no newer APIs)"
        )
    return text


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2])
