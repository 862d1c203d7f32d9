"""One brokered kernel, and what its runtime is asked about it once it runs.

After a start, Docker is the record: the container (or, in swarm mode, the service)
carries the user's name, the kernel id and the broker's instance id, so a restarted
broker finds its kernels again from labels alone (:func:`owned_kernels`). Status,
signals, logs and removal are the engine's or Swarm's runtime
(provisioning/container/runtime.py), the same code a single-user server's kernels use.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docker import DockerClient
from jupyter_client.connect import LocalPortCache

from ..docker import labels
from ..errors import BadRequest, GpuEnvError
from ..provisioning.container.engine.engine_runtime import owned_containers
from ..provisioning.container.runtime import KernelRuntime, RuntimeContext
from ..provisioning.container.swarm.swarm_runtime import owned_services
from ..provisioning.kernel_errors import SignalNotDelivered

SIGNALS = frozenset({"SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"})


class NotYours(GpuEnvError):
    """404: no kernel of that id belongs to the caller (whether or not it exists)."""

    status = 404


class Conflict(GpuEnvError):
    status = 409


@dataclass
class BrokeredKernel:
    """One kernel container (or Swarm service), whose it is, and where it runs."""

    kernel_id: str
    user: str
    environment_id: str
    runtime: KernelRuntime
    gpus: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    ports: list[int] = field(default_factory=list)  # from this process's port cache

    @property
    def container_id(self) -> str:
        return str(self.runtime.describe().get("id") or "")

    @property
    def container_name(self) -> str:
        return str(self.runtime.describe().get("name") or "")

    def to_json(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kernel_id": self.kernel_id,
            "user": self.user,
            "environment_id": self.environment_id,
            "container": self.container_name,
            "image": str(self.runtime.describe().get("image") or ""),
            "gpus": list(self.gpus),
            "started": self.started,
            "placement": self.runtime.placement(),
        }
        if state is not None:
            data["running"] = bool(state.get("Running"))
            data["exit_code"] = None if state.get("Running") else state.get("ExitCode")
        return data


async def kernel_state(kernel: BrokeredKernel) -> dict[str, Any]:
    """``{"Running": bool, "ExitCode": int|None}``; a vanished kernel exited -1."""
    code = await kernel.runtime.poll()
    return {"Running": code is None, "ExitCode": code}


async def deliver_signal(kernel: BrokeredKernel, name: str) -> None:
    """The runtime's delivery; what it cannot deliver is a 409 that says why."""
    if name not in SIGNALS:
        raise BadRequest(f"signal must be one of {', '.join(sorted(SIGNALS))}, not {name!r}")
    try:
        await kernel.runtime.signal(signal.Signals[name])
    except SignalNotDelivered as err:
        raise Conflict(err.message) from err


async def remove(kernel: BrokeredKernel) -> None:
    """Remove the kernel's container, or its service and secret; free its ports here."""
    await kernel.runtime.remove(requested=True)
    cache = LocalPortCache.instance()
    for port in kernel.ports:
        cache.return_port(port)
    kernel.ports = []


def owned_kernels(
    client: DockerClient,
    instance_id: str,
    swarm_mode: bool,
    gpu_resource: str,
    context_for: Callable[[str], RuntimeContext],
    log: logging.Logger,
) -> list[BrokeredKernel]:
    """The running kernels labelled with ``instance_id``; ended ones are removed."""
    owned = [f"{labels.ROLE}=kernel", f"{labels.SERVER_ID}={instance_id}"]
    found: list[tuple[dict[str, str], KernelRuntime, list[str]]] = []
    if swarm_mode:
        for marks, service in owned_services(client, owned, gpu_resource, context_for, log):
            placement = service.placement() or {}
            found.append((marks, service, list(placement.get("gpus") or [])))
    else:
        found.extend(owned_containers(client, owned, context_for, log))
    kernels = []
    for marks, runtime, gpus in found:
        user = marks.get(labels.USER)
        if not user:
            continue
        kernels.append(
            BrokeredKernel(
                kernel_id=marks.get(labels.KERNEL_ID, ""),
                user=user,
                environment_id=marks.get(labels.ENVIRONMENT_ID, ""),
                runtime=runtime,
                gpus=gpus,
            )
        )
    return kernels


def signal_name(value: object) -> str:
    """"SIGINT", "INT" or 2 as the signal's name."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return signal.Signals(value).name
        except ValueError as err:
            raise BadRequest(f"Unknown signal {value}.") from err
    text = str(value).upper()
    return text if text.startswith("SIG") else f"SIG{text}"
