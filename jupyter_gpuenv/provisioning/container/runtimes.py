"""Which runtime runs a container kernel: the configuration's choice, and records' kinds."""

from __future__ import annotations

from typing import Any

from ...config import GpuEnv
from .brokered.broker_runtime import BrokeredRuntime
from .engine.engine_runtime import EngineRuntime
from .runtime import KernelRuntime
from .swarm.swarm_runtime import SwarmRuntime

RUNTIMES: dict[str, type[KernelRuntime]] = {
    runtime.kind: runtime for runtime in (EngineRuntime, SwarmRuntime, BrokeredRuntime)
}
# c.GpuEnv.scheduler -> runtime, where no broker runs the kernels.
SCHEDULED = {"docker": EngineRuntime.kind, "swarm": SwarmRuntime.kind}


def runtime_kind(config: GpuEnv) -> str:
    """The runtime the admin's configuration names: the broker's when there is one."""
    if config.broker_url:
        return BrokeredRuntime.kind
    return SCHEDULED[str(config.scheduler).lower()]


def earlier_record(info: dict[str, Any]) -> dict[str, Any] | None:
    """The runtime record within provisioner info written before runtimes had their own."""
    if info.get("brokered"):
        return {"kind": BrokeredRuntime.kind, "started": True, "image": info.get("image")}
    if info.get("container_id"):
        keys = ("container_id", "container_name", "image")
        return {"kind": EngineRuntime.kind, **{key: info.get(key) for key in keys}}
    return None
