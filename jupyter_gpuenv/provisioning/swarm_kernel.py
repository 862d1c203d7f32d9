"""The Docker provisioner's swarm mode (``c.GpuEnv.scheduler = "swarm"``).

The provisioner resolves the environment, policy, image and container request as in
Docker mode; from there these functions take over: the kernel becomes a Swarm service
(swarm.py), the connection info points at the node it landed on, CurveZMQ is always on
(kernel traffic crosses hosts), an interrupt is a message on the control channel, and
shutdown removes the service and its secret.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import signal
import threading
from typing import TYPE_CHECKING, Any

import zmq
from docker.errors import APIError
from jupyter_client.connect import KernelConnectionInfo

from ..docker.client import DaemonUnreachable, docker_client
from ..gpu_set import GpuSet
from .errors import KernelStartFailed
from .start_progress import StartProgress
from .swarm import (
    SwarmPlacement,
    SwarmStart,
    interrupt,
    remove_service,
    start_service,
    task_exit_code,
)
from .swarm_spec import swarm_gpu_count, swarm_gpu_environment

if TYPE_CHECKING:
    from .docker import DockerProvisioner


async def launch(
    prov: DockerProvisioner,
    client: Any,
    image_id: str,
    python: str,
    server_env: dict[str, str],
    progress: StartProgress | None = None,
) -> KernelConnectionInfo:
    """Start the kernel as a service; return connection info naming its node."""
    config = prov.gpuenv_config
    _env, launch_plan = prov._prepared()
    gpu_count = swarm_gpu_count(launch_plan.gpus, config.swarm_gpu_resource)
    # Docker mode's request, minus its device requests: Swarm assigns the GPUs.
    prov._launch = dataclasses.replace(launch_plan, gpus=GpuSet.none())
    try:
        request = await asyncio.to_thread(
            prov._container_request, client, image_id, python, server_env
        )
    finally:
        prov._launch = launch_plan
    request.gpu_environment = swarm_gpu_environment(gpu_count)
    # The last gate of Docker mode, on the same request the service is built from.
    await asyncio.to_thread(prov.checked_arguments, request)
    km = prov.parent
    if km is None:
        raise KernelStartFailed("Docker kernels need a KernelManager as parent.")
    if km.curve_publickey is None:
        km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
    info = km.get_connection_info()
    start = SwarmStart(
        gpu_resource=config.swarm_gpu_resource,
        gpu_count=gpu_count,
        gpu_wait_timeout=config.gpu_wait_timeout,
        start_timeout=config.kernel_start_timeout,
        image=prov.image or image_id,
    )
    placement, ports = await start_service(client, request, info, start, prov.log, progress)
    prov._swarm = placement
    _track(placement, config.docker_host or None)
    connection: dict[str, Any] = dict(info)
    connection.update(ports)
    connection["ip"] = placement.node_addr
    prov.connection_info = connection  # type: ignore[assignment]
    prov.log.info(
        "Kernel %s: service %s of %s ready on node %s (%s), GPUs %s",
        prov.kernel_id,
        placement.service_name,
        prov.image,
        placement.node_name,
        placement.node_addr,
        ",".join(placement.gpus) or "none",
    )
    return prov.connection_info


async def poll(prov: DockerProvisioner) -> int | None:
    placement = prov._swarm
    if placement is None:
        return 0
    try:
        client = prov.services.docker()
        return await asyncio.to_thread(task_exit_code, client, placement.service_id)
    except (APIError, DaemonUnreachable):
        return None  # cannot tell; a manager hiccup must not trigger a restart


async def send_signal(prov: DockerProvisioner, signum: int) -> None:
    """SIGINT: interrupt_request on the control channel; SIGKILL/SIGTERM: remove the service.

    A signal cannot reach a process on another node; other signals are not delivered.
    """
    placement = prov._swarm
    if placement is None or prov.parent is None:
        return
    if signum == signal.SIGINT:
        interrupt(prov.parent)
    elif signum in (signal.SIGKILL, signal.SIGTERM):
        client = prov.services.docker()
        await asyncio.to_thread(remove_service, client, placement)
    else:
        prov.log.warning(
            "Kernel %s: signal %s is not delivered to a swarm kernel", prov.kernel_id, signum
        )


async def cleanup(prov: DockerProvisioner) -> None:
    """Remove the service and its secret."""
    placement, prov._swarm = prov._swarm, None
    if placement is None:
        return
    _untrack(placement)
    try:
        client = prov.services.docker()
        await asyncio.to_thread(remove_service, client, placement)
    except (APIError, DaemonUnreachable) as err:
        prov.log.warning(
            "Kernel %s: service %s not removed: %s", prov.kernel_id, placement.service_name, err
        )


def kernel_placement(provisioner: object) -> dict[str, Any] | None:
    """Node and GPUs of a swarm-mode kernel's provisioner; None for any other kernel."""
    placement = getattr(provisioner, "_swarm", None)
    return placement.to_json() if isinstance(placement, SwarmPlacement) else None


# Services started by this process and not cleaned up yet, removed at interpreter exit
# (plain jupyter_client programs that exit without shutting their kernels down).
_live: dict[str, tuple[SwarmPlacement, str | None]] = {}
_live_lock = threading.Lock()


def _track(placement: SwarmPlacement, docker_host: str | None) -> None:
    with _live_lock:
        if not _live:
            atexit.register(_remove_live_at_exit)
        _live[placement.service_id] = (placement, docker_host)


def forget(placement: SwarmPlacement) -> None:
    """Leave the service running at this process's exit (the broker's kernels)."""
    _untrack(placement)


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
