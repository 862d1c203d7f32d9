"""A kernel as a Docker Swarm service: create, wait for a GPU and for ready, poll, remove.

The Swarm manager schedules the service's one task on a node with enough free GPUs (a
generic-resource reservation) and hands the task the ids it got. This module watches that
task: while no node has a free GPU it stays pending and the start waits (up to
``c.GpuEnv.gpu_wait_timeout``); a task that fails (image missing on the node, mount path
missing, ...) ends the start with Swarm's reason and the kernel's last log lines. Ports
are random and recorded on the service; a port taken on the node makes the kernel exit
with "Address already in use", and the start retries with other ports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from docker import DockerClient
from docker.errors import APIError, NotFound

from ....docker import labels
from ....docker.runs import explanation
from ...kernel_errors import KernelStartFailed
from ...start_progress import StartProgress
from ..readiness import port_open
from ..request import ContainerRequest
from .service_spec import (
    PORT_NAMES,
    ServiceRequest,
    connection_payload,
    pick_ports,
    ports_in_labels,
    secret_labels,
    secret_name,
    service_labels,
    service_name,
    task_template,
)

POLL = 0.1
LOG_TAIL = 20
PORT_ATTEMPTS = 3
TASK_ENDED = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})
NOT_YET_RUNNING = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
PORT_TAKEN = "Address already in use"

_log = logging.getLogger(__name__)


class _PortTaken(Exception):
    """The kernel could not bind a port on its node; another pick may work."""


@dataclass
class SwarmPlacement:
    """Where a kernel service runs and which GPUs Swarm assigned it."""

    service_id: str
    service_name: str
    secret_id: str
    node_id: str = ""
    node_name: str = ""
    node_addr: str = ""
    gpus: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service_name,
            "node": self.node_name,
            "node_addr": self.node_addr,
            "gpus": list(self.gpus),
        }


@dataclass(frozen=True)
class SwarmStart:
    """The inputs of one service start besides the container request."""

    gpu_resource: str
    gpu_count: int
    gpu_wait_timeout: float
    start_timeout: float
    image: str
    # The Engine API version the service is sent at (engine_privileges.checked_api_version).
    api_version: str


async def start_service(
    client: DockerClient,
    request: ContainerRequest,
    connection_info: Mapping[str, Any],
    start: SwarmStart,
    log: logging.Logger | None = None,
    progress: StartProgress | None = None,
) -> tuple[SwarmPlacement, dict[str, int]]:
    """Create the kernel's secret and service and wait until its ports answer.

    Returns where it runs and its ports. On failure nothing of it is left. ``progress``
    hears of the steps, a wait for a free GPU included.
    """
    log = log or _log
    for attempt in range(PORT_ATTEMPTS):
        ports = pick_ports(await asyncio.to_thread(ports_in_use, client))
        if progress is not None:
            progress.step("service", f"Starting a Swarm service of {start.image}")
        placement = await asyncio.to_thread(_create, client, request, connection_info, ports, start)
        try:
            await _wait_ready(client, placement, ports, start, log, progress)
        except _PortTaken:
            await asyncio.to_thread(remove_service, client, placement)
            log.info("Kernel %s: a port was taken on its node; new ports", request.kernel_id)
            if attempt + 1 == PORT_ATTEMPTS:
                raise KernelStartFailed(
                    f"The kernel service of {start.image} could not bind its ports on node "
                    f"{placement.node_name} in {PORT_ATTEMPTS} attempts."
                ) from None
            continue
        except BaseException:
            await asyncio.to_thread(remove_service, client, placement)
            raise
        return placement, ports
    raise AssertionError("unreachable")


def _create(
    client: DockerClient,
    request: ContainerRequest,
    connection_info: Mapping[str, Any],
    ports: dict[str, int],
    start: SwarmStart,
) -> SwarmPlacement:
    name = secret_name(request)
    try:
        secret = client.secrets.create(
            name=name,
            data=connection_payload(connection_info, ports),
            labels=secret_labels(request),
        )
    except APIError as err:
        raise KernelStartFailed(f"The Swarm manager refused the kernel's secret: {err}") from err
    secret_id = str(secret.id)
    spec = ServiceRequest(
        request, secret_id, name, start.gpu_resource, start.gpu_count, ports, start.api_version
    )
    try:
        template = task_template(spec)
        svc_name = service_name(request)
        created = client.api.create_service(
            template, name=svc_name, labels=service_labels(request, ports)
        )
    except BaseException as err:
        _remove_secret(client, secret_id)
        if isinstance(err, APIError):
            raise KernelStartFailed(
                f"The Swarm manager refused the kernel service: {explanation(err)}"
            ) from err
        raise
    return SwarmPlacement(created["ID"], svc_name, secret_id)


async def _wait_ready(
    client: DockerClient,
    placement: SwarmPlacement,
    ports: dict[str, int],
    start: SwarmStart,
    log: logging.Logger,
    progress: StartProgress | None = None,
) -> None:
    """Until the task runs (waiting for a GPU if need be) and every port answers."""
    began = time.monotonic()
    gpu_deadline = began + start.gpu_wait_timeout
    deadline = began + start.start_timeout
    waiting_for_gpu = False
    while True:
        task = await asyncio.to_thread(latest_task, client, placement.service_id)
        state = (task or {}).get("Status", {}).get("State", "new")
        err = (task or {}).get("Status", {}).get("Err", "") or ""
        if state in NOT_YET_RUNNING:
            if state == "pending" and "insufficient resources" in err:
                if not waiting_for_gpu:
                    waiting_for_gpu = True
                    wait = f"no node has {start.gpu_count} free {start.gpu_resource}"
                    log.info(
                        "Kernel service %s: waiting for a free GPU (%s)",
                        placement.service_name,
                        wait,
                    )
                    if progress is not None:
                        progress.step("gpu", f"waiting for a free GPU ({wait})", "gpu")
                if time.monotonic() > gpu_deadline:
                    raise KernelStartFailed(
                        f"No node had {start.gpu_count} free {start.gpu_resource} within "
                        f"{start.gpu_wait_timeout:g} s (c.GpuEnv.gpu_wait_timeout); the "
                        "kernel was not started. Shut down an idle kernel that holds a GPU, "
                        "or try again later."
                    )
                deadline = time.monotonic() + start.start_timeout
            elif time.monotonic() > deadline:
                why = f": {err}" if err else ""
                raise KernelStartFailed(
                    f"The kernel service of {start.image} was not started within "
                    f"{start.start_timeout:g} s (task {state}{why})."
                )
            await asyncio.sleep(POLL)
            continue
        if state != "running":
            logs = await asyncio.to_thread(service_log_tail, client, placement.service_id)
            if PORT_TAKEN in logs:
                raise _PortTaken()
            node = _node_name(client, (task or {}).get("NodeID", ""))
            hint = ""
            if "No such image" in err:
                hint = (
                    f" The image {start.image} is not on node {node}: distribute images "
                    "through a registry, or `docker load` them on every node."
                )
            elif "bind source path does not exist" in err:
                hint = (
                    f" A folder mounted into the kernel is missing on node {node}: shared "
                    "storage must be mounted at the same path on every node."
                )
            raise KernelStartFailed(
                f"The kernel service of {start.image} {state} on node {node}: "
                f"{err or 'no reason given'}.{hint} Last log lines:\n{logs}"
            )
        break
    assert task is not None
    placement.node_id = task.get("NodeID", "")
    placement.node_name, placement.node_addr = await asyncio.to_thread(
        node_address, client, placement.node_id
    )
    placement.gpus = assigned_gpus(task, start.gpu_resource)
    if waiting_for_gpu:
        log.info("Kernel service %s: got %s", placement.service_name, placement.gpus)
    if progress is not None:
        got = ", ".join(placement.gpus) or "no GPU"
        progress.step(
            "kernel",
            f"Running on node {placement.node_name} ({got}); waiting for the kernel to answer",
            "kernel",
        )
    waiting = [ports[name] for name in PORT_NAMES]
    checks = 0
    while waiting:
        waiting = [p for p in waiting if not await port_open(placement.node_addr, p)]
        if not waiting:
            return
        checks += 1
        if checks % 4 == 0:
            task = await asyncio.to_thread(latest_task, client, placement.service_id)
            state = (task or {}).get("Status", {}).get("State", "")
            if state != "running":
                logs = await asyncio.to_thread(service_log_tail, client, placement.service_id)
                if PORT_TAKEN in logs:
                    raise _PortTaken()
                raise KernelStartFailed(
                    f"The kernel service of {start.image} ended ({state}) on node "
                    f"{placement.node_name} before the kernel was ready. Last log "
                    f"lines:\n{logs}"
                )
        if time.monotonic() > deadline:
            logs = await asyncio.to_thread(service_log_tail, client, placement.service_id)
            raise KernelStartFailed(
                f"The kernel in {start.image} on node {placement.node_name} was not ready "
                f"within {start.start_timeout:g} s (c.GpuEnv.kernel_start_timeout). Last "
                f"log lines:\n{logs}"
            )
        await asyncio.sleep(0.05)


def latest_task(client: DockerClient, service_id: str) -> dict[str, Any] | None:
    tasks = client.api.tasks(filters={"service": service_id})
    return max(tasks, key=lambda t: t.get("CreatedAt", ""), default=None)


def task_exit_code(client: DockerClient, service_id: str) -> int | None:
    """None while the service's task runs (or is about to), else its exit code.

    A removed service counts as -1, like a vanished container.
    """
    try:
        task = latest_task(client, service_id)
    except NotFound:
        return -1
    if task is None:
        try:
            client.api.inspect_service(service_id)
        except NotFound:
            return -1
        return None
    status = task.get("Status", {})
    if status.get("State") not in TASK_ENDED:
        return None
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return int(code) if code is not None else -1


def assigned_gpus(task: Mapping[str, Any], resource: str) -> list[str]:
    """The ids of ``resource`` Swarm assigned to the task (its ``GenericResources``)."""
    gpus = []
    for item in task.get("GenericResources") or task.get("AssignedGenericResources") or []:
        named = item.get("NamedResourceSpec") or {}
        if named.get("Kind") == resource:
            gpus.append(str(named.get("Value")))
    return sorted(gpus)


def node_address(client: DockerClient, node_id: str) -> tuple[str, str]:
    """The node's name and the address its host-network kernels are reached at."""
    attrs = client.api.inspect_node(node_id)
    name = attrs.get("Description", {}).get("Hostname", node_id[:12])
    addr = attrs.get("Status", {}).get("Addr", "")
    if not addr or addr == "0.0.0.0":
        addr = (attrs.get("ManagerStatus") or {}).get("Addr", "").rsplit(":", 1)[0]
    return name, addr


def _node_name(client: DockerClient, node_id: str) -> str:
    if not node_id:
        return "(none)"
    try:
        return node_address(client, node_id)[0]
    except APIError:
        return node_id[:12]


def service_log_tail(client: DockerClient, service_id: str) -> str:
    try:
        chunks = client.api.service_logs(
            service_id, stdout=True, stderr=True, tail=str(LOG_TAIL), follow=False
        )
        text = b"".join(chunks).decode(errors="replace").rstrip()
    except Exception as err:
        return f"(logs unavailable: {err})"
    return text or "(no output)"


def ports_in_use(client: DockerClient) -> set[int]:
    """Ports recorded by the kernel services on the swarm (of any server)."""
    taken: set[int] = set()
    for service in client.api.services(filters={"label": f"{labels.ROLE}=kernel"}):
        taken |= ports_in_labels(service.get("Spec", {}).get("Labels") or {})
    return taken


def remove_service(client: DockerClient, placement: SwarmPlacement) -> None:
    """Remove the service, then its secret (which Swarm frees once the service is gone)."""
    try:
        client.api.remove_service(placement.service_id)
    except NotFound:
        pass
    _remove_secret(client, placement.secret_id)


def _remove_secret(client: DockerClient, secret_id: str, attempts: int = 20) -> None:
    for _ in range(attempts):
        try:
            client.api.remove_secret(secret_id)
            return
        except NotFound:
            return
        except APIError as err:
            if "in use" not in str(err):
                _log.warning("Secret %s not removed: %s", secret_id, explanation(err))
                return
        time.sleep(0.25)
    _log.warning("Secret %s still in use; not removed", secret_id)
