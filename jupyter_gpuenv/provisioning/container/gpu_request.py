"""GPU set -> Docker device requests, decided against what the engine can honour.

Without NVIDIA support (see :mod:`jupyter_gpuenv.docker.nvidia_runtime`) a device request
fails the container create with an obscure error, so the decision is made here: "all"
starts without GPUs (and says so), explicit ids or a count fail with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from docker.types import DeviceRequest

from ...docker.nvidia_runtime import GpuRuntime
from ...gpu_set import GpuSet
from ..kernel_errors import KernelStartFailed

DRIVER_CAPABILITIES = "compute,utility"


@dataclass
class GpuPlan:
    """Device requests and variables for one container, plus lines for the start log."""

    device_requests: list[DeviceRequest] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def plan_gpus(gpus: GpuSet, runtime: GpuRuntime) -> GpuPlan:
    """Device requests for the policy's GPU set ("all", "none", ids or a count)."""
    plan = GpuPlan()
    if gpus.is_none:
        plan.environment["NVIDIA_VISIBLE_DEVICES"] = "void"
        return plan
    if runtime.kind is None:
        if gpus.is_all:
            plan.environment["NVIDIA_VISIBLE_DEVICES"] = "void"
            plan.notes.append(
                f"GPUs requested (all) but Docker cannot provide them ({runtime.detail}); "
                "starting the kernel without GPUs"
            )
            return plan
        raise KernelStartFailed(
            f"GPUs {gpus} are configured for this environment but Docker cannot "
            f"provide GPUs ({runtime.detail}). Install the NVIDIA container toolkit and "
            'restart Docker, or set gpus to "none" for this environment.'
        )
    plan.environment["NVIDIA_DRIVER_CAPABILITIES"] = DRIVER_CAPABILITIES
    if gpus.count is not None:
        if runtime.kind == "cdi":
            raise KernelStartFailed(
                f"gpus={gpus.count} (any {gpus.count} GPUs) needs the nvidia runtime; this "
                "engine offers GPUs through CDI only, which names devices. List GPU ids instead."
            )
        plan.device_requests.append(DeviceRequest(count=gpus.count, capabilities=[["gpu"]]))
        return plan
    ids = None if gpus.ids is None else list(gpus.ids)
    if runtime.kind == "cdi":
        names = ["all"] if ids is None else ids
        plan.device_requests.append(
            DeviceRequest(driver="cdi", device_ids=[f"nvidia.com/gpu={n}" for n in names])
        )
    elif ids is None:
        plan.device_requests.append(DeviceRequest(count=-1, capabilities=[["gpu"]]))
    else:
        plan.device_requests.append(DeviceRequest(device_ids=ids, capabilities=[["gpu"]]))
    plan.environment["NVIDIA_VISIBLE_DEVICES"] = gpus.nvidia_visible_devices()
    return plan
