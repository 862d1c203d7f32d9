"""One brokered kernel, and what the engine is asked about it once it runs.

After a start, Docker is the record: the container (or, in swarm mode, the service)
carries the user's name, the kernel id and the broker's instance id, so a restarted
broker finds its kernels again from labels alone (:func:`owned_kernels`). The functions
here are synchronous Docker calls; the broker runs them in threads.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from docker.errors import APIError, NotFound

from ..docker import labels
from ..docker.runs import explanation
from ..errors import BadRequest, GpuEnvError
from ..provisioning import swarm
from ..provisioning.readiness import log_tail
from ..provisioning.swarm import SwarmPlacement

SIGNALS = frozenset({"SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"})


class NotYours(GpuEnvError):
    """404: no kernel of that id belongs to the caller (whether or not it exists)."""

    status = 404


class Conflict(GpuEnvError):
    status = 409


@dataclass
class BrokeredKernel:
    """One kernel container (or Swarm service) and whose it is."""

    kernel_id: str
    user: str
    environment_id: str
    container_id: str
    container_name: str
    image: str
    gpus: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    connection_copy: str | None = None
    service: SwarmPlacement | None = None  # swarm mode: the kernel's service

    def to_json(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kernel_id": self.kernel_id,
            "user": self.user,
            "environment_id": self.environment_id,
            "container": self.container_name,
            "image": self.image,
            "gpus": list(self.gpus),
            "started": self.started,
            "placement": self.service.to_json() if self.service else None,
        }
        if state is not None:
            data["running"] = bool(state.get("Running"))
            data["exit_code"] = None if state.get("Running") else state.get("ExitCode")
        return data


def kernel_state(client: Any, kernel: BrokeredKernel) -> dict[str, Any]:
    """``{"Running": bool, "ExitCode": int|None, ...}``; a vanished kernel exited -1."""
    if kernel.service is not None:
        code = swarm.task_exit_code(client, kernel.service.service_id)
        return {"Running": code is None, "ExitCode": code}
    try:
        attrs = client.api.inspect_container(kernel.container_id)
    except NotFound:
        return {"Running": False, "ExitCode": -1}
    return dict(attrs.get("State") or {})


def deliver_signal(client: Any, kernel: BrokeredKernel, name: str) -> None:
    """``docker kill --signal``; a Swarm kernel only ends (TERM, KILL)."""
    if name not in SIGNALS:
        raise BadRequest(f"signal must be one of {', '.join(sorted(SIGNALS))}, not {name!r}")
    if kernel.service is not None:
        # A signal cannot cross to another node: the server interrupts a swarm kernel on
        # its control channel; TERM and KILL end its service.
        if name not in ("SIGTERM", "SIGKILL"):
            raise Conflict(
                f"{name} cannot reach a kernel on another node; interrupt it with an "
                "interrupt_request on its control channel."
            )
        swarm.remove_service(client, kernel.service)
        return
    try:
        client.api.kill(kernel.container_id, name)
    except NotFound:
        pass
    except APIError as err:
        if err.status_code != 409:  # not running any more
            raise Conflict(f"The kernel could not be signalled: {explanation(err)}") from err


def log_lines(client: Any, kernel: BrokeredKernel) -> str:
    if kernel.service is not None:
        return swarm.service_log_tail(client, kernel.service.service_id)
    try:
        return log_tail(client.containers.get(kernel.container_id))
    except NotFound:
        return ""


def remove(client: Any, kernel: BrokeredKernel) -> None:
    """Remove the kernel's container, or its service and secret."""
    if kernel.service is not None:
        swarm.remove_service(client, kernel.service)
        return
    try:
        client.api.remove_container(kernel.container_id, force=True)
    except NotFound:
        pass


def owned_kernels(
    client: Any, instance_id: str, swarm_mode: bool, gpu_resource: str, log: logging.Logger
) -> list[BrokeredKernel]:
    """The running kernels labelled with ``instance_id``; ended ones are removed."""
    owned = [f"{labels.ROLE}=kernel", f"{labels.SERVER_ID}={instance_id}"]
    if swarm_mode:
        return _owned_services(client, owned, gpu_resource, log)
    found = []
    containers = client.containers.list(all=True, filters={"label": owned}, ignore_removed=True)
    for container in containers:
        marks = container.labels or {}
        kernel_id, user = marks.get(labels.KERNEL_ID), marks.get(labels.USER)
        if not kernel_id or not user:
            continue
        if container.status not in ("running", "created"):
            try:  # the kernel ended while the broker was away
                container.remove(force=True)
            except APIError as err:
                log.debug("Container %s not removed: %s", container.name, err)
            continue
        found.append(
            BrokeredKernel(
                kernel_id=kernel_id,
                user=user,
                environment_id=marks.get(labels.ENVIRONMENT_ID, ""),
                container_id=str(container.id),
                container_name=str(container.name),
                image=str((container.attrs.get("Config") or {}).get("Image") or ""),
                gpus=_device_ids(container.attrs),
            )
        )
    return found


def _owned_services(
    client: Any, owned: list[str], gpu_resource: str, log: logging.Logger
) -> list[BrokeredKernel]:
    try:
        services = client.api.services(filters={"label": owned})
    except APIError as err:
        log.warning("Kernel services not listed: %s", explanation(err))
        return []
    found = []
    for item in services:
        spec = item.get("Spec") or {}
        marks = spec.get("Labels") or {}
        kernel_id, user = marks.get(labels.KERNEL_ID), marks.get(labels.USER)
        if not kernel_id or not user:
            continue
        container_spec = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        secrets = container_spec.get("Secrets") or [{}]
        service = SwarmPlacement(
            service_id=str(item["ID"]),
            service_name=str(spec.get("Name") or ""),
            secret_id=str(secrets[0].get("SecretID") or ""),
        )
        if swarm.task_exit_code(client, service.service_id) is not None:
            swarm.remove_service(client, service)
            continue
        task = swarm.latest_task(client, service.service_id)
        if task is not None and task.get("NodeID"):
            service.node_id = str(task["NodeID"])
            service.node_name, service.node_addr = swarm.node_address(client, service.node_id)
            service.gpus = swarm.assigned_gpus(task, gpu_resource)
        found.append(
            BrokeredKernel(
                kernel_id=kernel_id,
                user=user,
                environment_id=marks.get(labels.ENVIRONMENT_ID, ""),
                container_id="",
                container_name=service.service_name,
                image=str(container_spec.get("Image") or ""),
                gpus=service.gpus,
                service=service,
            )
        )
    return found


def _device_ids(attrs: dict[str, Any]) -> list[str]:
    requests = ((attrs.get("HostConfig") or {}).get("DeviceRequests")) or []
    return [str(i) for r in requests for i in (r.get("DeviceIDs") or [])]


def signal_name(value: object) -> str:
    """"SIGINT", "INT" or 2 as the signal's name."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return signal.Signals(value).name
        except ValueError as err:
            raise BadRequest(f"Unknown signal {value}.") from err
    text = str(value).upper()
    return text if text.startswith("SIG") else f"SIG{text}"
