"""A kernel as a Docker Swarm service (``c.GpuEnv.scheduler = "swarm"``).

The environment, policy, image and container request are decided as for the engine
(preparation.py); the kernel then becomes a one-replica service (swarm_service.py) on
whichever node Swarm picks, the connection info names that node, CurveZMQ is always on
(kernel traffic crosses hosts), an interrupt is a message on the control channel, and
removal takes the service and its secret.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import pathlib
import signal
import threading
from collections.abc import Callable
from typing import Any

import zmq
from docker import DockerClient
from docker.errors import APIError

from ....config import GpuEnv
from ....docker import labels
from ....docker.client import DaemonUnreachable, docker_client
from ....docker.runs import explanation
from ....gpu_set import GpuSet
from ...kernel_errors import KernelStartFailed, SignalNotDelivered
from ..control_channel import ControlChannel
from ..runtime import KernelRuntime, KernelStart, RuntimeContext, record_text
from .engine_privileges import checked_api_version
from .service_spec import swarm_gpu_count, swarm_gpu_environment
from .swarm_service import (
    SwarmPlacement,
    SwarmStart,
    assigned_gpus,
    latest_task,
    node_address,
    remove_service,
    service_log_tail,
    start_service,
    task_exit_code,
)

ENDING_SIGNALS = (signal.SIGTERM, signal.SIGKILL)


class SwarmRuntime(KernelRuntime):
    """One kernel service on the swarm this server's Docker endpoint manages."""

    kind = "swarm"

    def __init__(self, context: RuntimeContext) -> None:
        super().__init__(context)
        self.service: SwarmPlacement | None = None
        self.image: str | None = None
        # Interrupts where a signal cannot reach: only with the kernel's manager.
        self.control = ControlChannel(context.manager) if context.manager else None
        self.connection_copy: str | None = None

    async def prepare(self, start: KernelStart) -> None:
        await start.resolve_container()

    async def create(self, start: KernelStart) -> dict[str, Any]:
        preparation, km = start.preparation, start.manager
        config = preparation.owner.gpuenv_config
        _, launch = preparation.prepared()
        gpu_count = swarm_gpu_count(launch.gpus, config.swarm_gpu_resource)
        # Before any image, secret or service is made: refused on an engine that would
        # drop no-new-privileges, unless the admin allowed it.
        api_version = await asyncio.to_thread(self._checked_api_version, config)
        client, image_id, python = await preparation.docker_and_image(
            self.context.client, start.progress
        )
        self.image = preparation.image
        try:
            # The engine's request, minus its device requests: Swarm assigns the GPUs.
            request = await asyncio.to_thread(
                preparation.container_request,
                client,
                image_id,
                python,
                start.cwd,
                start.server_env,
                GpuSet.none(),
            )
            self.connection_copy = preparation.connection_copy
            request.gpu_environment = swarm_gpu_environment(gpu_count)
            # The engine's last gate, on the same request the service is built from.
            preparation.checked_arguments(request)
            if km.curve_publickey is None:
                km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
            info = km.get_connection_info()
            swarm_start = SwarmStart(
                gpu_resource=config.swarm_gpu_resource,
                gpu_count=gpu_count,
                gpu_wait_timeout=config.gpu_wait_timeout,
                start_timeout=config.kernel_start_timeout,
                image=self.image or image_id,
                api_version=api_version,
            )
            placement, ports = await start_service(
                client, request, info, swarm_start, self.log, start.progress
            )
        except BaseException:
            preparation.discard_connection_copy()  # made, perhaps, before it was ours
            self.connection_copy = None
            raise
        self.service = placement
        if self.context.owned:
            _track(placement, self.context.docker_host)
        connection: dict[str, Any] = dict(info)
        connection.update(ports)
        connection["ip"] = placement.node_addr
        self.log.info(
            "Kernel %s: service %s of %s ready on node %s (%s), GPUs %s",
            self.context.kernel_id,
            placement.service_name,
            self.image,
            placement.node_name,
            placement.node_addr,
            ",".join(placement.gpus) or "none",
        )
        return connection

    def _checked_api_version(self, config: GpuEnv) -> str:
        """The API version the service goes at (engine_privileges); a manager that does not
        answer is a start failure with its address, as in docker_and_image."""
        try:
            client = self.context.client(True)
        except DaemonUnreachable as err:
            raise KernelStartFailed(err.message) from err
        try:
            return checked_api_version(client, config.swarm_allow_old_engine)
        except (APIError, OSError) as err:  # OSError: requests' connection errors
            raise KernelStartFailed(
                f"The Swarm manager did not list its nodes: {explanation(err)}"
            ) from err

    @property
    def exists(self) -> bool:
        return self.service is not None

    async def poll(self) -> int | None:
        if self.service is None:
            return 0
        try:
            client = self.context.client()
            return await asyncio.to_thread(task_exit_code, client, self.service.service_id)
        except (APIError, DaemonUnreachable):
            return None  # cannot tell; a manager hiccup must not trigger a restart

    async def signal(self, signum: int) -> None:
        """SIGINT: an interrupt_request on the control channel; SIGTERM/SIGKILL: removal.

        A signal cannot reach a process on another node; other signals are refused.
        """
        if self.service is None:
            return
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.control is not None:
            self.control.interrupt()
        elif signum in ENDING_SIGNALS:
            client = self.context.client()
            await asyncio.to_thread(remove_service, client, self.service)
        elif signum == signal.SIGINT:
            raise SignalNotDelivered(
                f"{name} cannot reach a kernel on another node; interrupt it with an "
                "interrupt_request on its control channel."
            )
        else:
            raise SignalNotDelivered(
                f"{name} cannot reach a kernel on another node: a Swarm kernel is "
                "interrupted (SIGINT) or ended (SIGTERM, SIGKILL)."
            )

    async def remove(self, requested: bool = True) -> None:
        placement, self.service = self.service, None
        self._remove_connection_copy()
        if self.control is not None:
            self.control.close()
        if placement is None:
            return
        _untrack(placement)
        try:
            client = self.context.client()
            await asyncio.to_thread(remove_service, client, placement)
        except (APIError, DaemonUnreachable) as err:
            self.log.warning(
                "Kernel %s: service %s not removed: %s",
                self.context.kernel_id,
                placement.service_name,
                err,
            )

    async def logs(self) -> str:
        if self.service is None:
            return ""
        client = self.context.client()
        return await asyncio.to_thread(service_log_tail, client, self.service.service_id)

    def placement(self) -> dict[str, Any] | None:
        return self.service.to_json() if self.service is not None else None

    def describe(self) -> dict[str, Any]:
        name = self.service.service_name if self.service is not None else None
        return {"id": None, "name": name, "image": self.image}

    def keep_after_exit(self) -> None:
        if self.service is not None:
            _untrack(self.service)

    def record(self) -> dict[str, Any]:
        service = self.service
        return {
            "kind": self.kind,
            "image": self.image,
            "connection_copy": self.connection_copy,
            "service": None
            if service is None
            else {
                "service_id": service.service_id,
                "service_name": service.service_name,
                "secret_id": service.secret_id,
                "node_id": service.node_id,
                "node_name": service.node_name,
                "node_addr": service.node_addr,
                "gpus": list(service.gpus),
            },
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], context: RuntimeContext) -> SwarmRuntime:
        runtime = cls(context)
        runtime.image = record_text(record, "image") or None
        runtime.connection_copy = record_text(record, "connection_copy") or None
        service = record.get("service")
        if isinstance(service, dict):
            gpus = service.get("gpus") or []
            if not isinstance(gpus, list):
                raise KernelStartFailed(f"The kernel's runtime record has bad GPUs: {gpus!r}.")
            runtime.service = SwarmPlacement(
                service_id=record_text(service, "service_id"),
                service_name=record_text(service, "service_name"),
                secret_id=record_text(service, "secret_id"),
                node_id=record_text(service, "node_id"),
                node_name=record_text(service, "node_name"),
                node_addr=record_text(service, "node_addr"),
                gpus=[str(gpu) for gpu in gpus],
            )
            if context.owned:
                _track(runtime.service, context.docker_host)
        return runtime

    def _remove_connection_copy(self) -> None:
        if self.connection_copy:
            pathlib.Path(self.connection_copy).unlink(missing_ok=True)
            self.connection_copy = None


def owned_services(
    client: DockerClient,
    label_filters: list[str],
    gpu_resource: str,
    context_for: Callable[[str], RuntimeContext],
    log: logging.Logger,
) -> list[tuple[dict[str, str], SwarmRuntime]]:
    """The running kernel services matching ``label_filters``, each with its labels and a
    runtime attached to it; ended ones are removed."""
    try:
        services = client.api.services(filters={"label": label_filters})
    except APIError as err:
        log.warning("Kernel services not listed: %s", explanation(err))
        return []
    found = []
    for item in services:
        spec = item.get("Spec") or {}
        marks = dict(spec.get("Labels") or {})
        kernel_id = marks.get(labels.KERNEL_ID)
        if not kernel_id:
            continue
        container_spec = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        secrets = container_spec.get("Secrets") or [{}]
        placement = SwarmPlacement(
            service_id=str(item["ID"]),
            service_name=str(spec.get("Name") or ""),
            secret_id=str(secrets[0].get("SecretID") or ""),
        )
        if task_exit_code(client, placement.service_id) is not None:
            remove_service(client, placement)
            continue
        task = latest_task(client, placement.service_id)
        if task is not None and task.get("NodeID"):
            placement.node_id = str(task["NodeID"])
            placement.node_name, placement.node_addr = node_address(client, placement.node_id)
            placement.gpus = assigned_gpus(task, gpu_resource)
        runtime = SwarmRuntime(context_for(kernel_id))
        runtime.service = placement
        runtime.image = str(container_spec.get("Image") or "")
        found.append((marks, runtime))
    return found


# Services started by this process and not removed yet, removed at interpreter exit
# (plain jupyter_client programs that exit without shutting their kernels down).
_live: dict[str, tuple[SwarmPlacement, str | None]] = {}
_live_lock = threading.Lock()


def _track(placement: SwarmPlacement, docker_host: str | None) -> None:
    with _live_lock:
        if not _live:
            atexit.register(_remove_live_at_exit)
        _live[placement.service_id] = (placement, docker_host)


def _untrack(placement: SwarmPlacement) -> None:
    with _live_lock:
        _live.pop(placement.service_id, None)


def _remove_live_at_exit() -> None:
    with _live_lock:
        remaining = list(_live.values())
        _live.clear()
    for placement, host in remaining:
        try:
            remove_service(docker_client(host), placement)
        except Exception:
            pass  # gone already, or the manager is unreachable: the sweep removes it later
