"""Docker kernels through the kernel broker: the single-user server's half.

With ``c.GpuEnv.broker_url`` the server has no Docker access. The Docker provisioner
hands each step to the broker (jupyter_gpuenv/broker) instead of the engine: the start
sends the environment, the kernelspec's provisioner config, the notebook folder and the
kernel's HMAC key; the broker applies the admin's policy for this Hub user, starts the
container and answers with the ports (and CurveZMQ keys) the kernel listens on, which
become the connection file. Poll, signal and shutdown are calls of their own; a refusal
keeps the broker's words and status (403 for policy, 409 for a quota's GPUs in use).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from jupyter_client.connect import KernelConnectionInfo

from ..broker_client import BrokerClient, BrokerError
from . import start_progress
from .errors import KernelDisconnected, KernelRefused, KernelStartFailed
from .readiness import PORT_NAMES
from .swarm import SwarmPlacement, interrupt

START_TIMEOUT_MARGIN = 120.0


def client_of(provisioner: Any) -> BrokerClient:
    """The provisioner's one client (its connections are reused by every poll)."""
    client = getattr(provisioner, "_broker_client", None)
    if client is None:
        client = provisioner._broker_client = BrokerClient(provisioner.gpuenv_config.broker_url)
    return client


def enabled(provisioner: Any) -> bool:
    return bool(provisioner.gpuenv_config.broker_url)


async def launch(
    provisioner: Any, progress: start_progress.StartProgress, cwd: str | None, env: dict[str, str]
) -> KernelConnectionInfo:
    """Ask the broker for the kernel; write the connection file from its answer."""
    km = provisioner.parent
    if km is None:
        raise KernelStartFailed("Docker kernels need a KernelManager as parent.")
    requested = dict(provisioner.requested_config)
    body = {
        "kernel_id": provisioner.kernel_id,
        "environment_id": provisioner.environment_id,
        "key": km.session.key.decode(),
        "signature_scheme": km.session.signature_scheme,
        "cwd": cwd,
        "config": requested,
        "session_name": env.get("JPY_SESSION_NAME", ""),
        "transport_encryption": provisioner._transport_encryption,
        "kernel_name": getattr(provisioner.kernel_spec, "name", None)
        or getattr(km, "kernel_name", None)
        or "",
    }
    progress.step("broker", "Asking the kernel broker to start the kernel")
    timeout = provisioner.gpuenv_config.kernel_start_timeout + START_TIMEOUT_MARGIN
    try:
        answer = await asyncio.to_thread(client_of(provisioner).start, body, timeout)
    except BrokerError as err:
        raise _as_start_error(err) from err
    connection = answer.get("connection") or {}
    kernel = answer.get("kernel") or {}
    try:
        for name in PORT_NAMES:
            setattr(km, name, int(connection[name]))
    except (KeyError, TypeError, ValueError) as err:
        await asyncio.to_thread(_stop_quietly, provisioner)
        raise KernelStartFailed(f"The kernel broker answered without the port {err}.") from err
    km.ip = str(connection.get("ip") or km.ip)
    if connection.get("curve_publickey") and hasattr(km, "curve_publickey"):
        km.curve_publickey = str(connection["curve_publickey"]).encode()
        km.curve_secretkey = str(connection.get("curve_secretkey") or "").encode() or None
    km.write_connection_file(jupyter_session=env.get("JPY_SESSION_NAME", ""))
    provisioner.connection_info = km.get_connection_info()
    provisioner.brokered = True
    provisioner.container_name = kernel.get("container")
    provisioner.image = kernel.get("image")
    provisioner.start_warning = answer.get("start_warning") or None
    placement = kernel.get("placement")
    if isinstance(placement, dict):  # the broker runs Swarm services: where this one landed
        provisioner._swarm = SwarmPlacement(
            service_id="",
            service_name=str(placement.get("service") or ""),
            secret_id="",
            node_name=str(placement.get("node") or ""),
            node_addr=str(placement.get("node_addr") or ""),
            gpus=[str(g) for g in placement.get("gpus") or []],
        )
    return provisioner.connection_info


async def poll(provisioner: Any) -> int | None:
    """None while the broker reports the kernel running; its exit code (-1: gone) else."""
    try:
        kernel = await asyncio.to_thread(client_of(provisioner).kernel, provisioner.kernel_id)
    except BrokerError as err:
        if err.status == 404:
            return -1
        return None  # the broker restarting: the kernel runs on, ask again
    if kernel.get("running"):
        return None
    code = kernel.get("exit_code")
    return int(code) if isinstance(code, int) else 0


async def send_signal(provisioner: Any, signum: int) -> None:
    """Through the broker; a Swarm kernel's interrupt goes on its control channel."""
    name = signal.Signals(signum).name
    if signum == signal.SIGINT and provisioner._swarm is not None and provisioner.parent:
        interrupt(provisioner.parent)
        return
    try:
        await asyncio.to_thread(client_of(provisioner).signal, provisioner.kernel_id, name)
    except BrokerError as err:
        if err.status == 404:
            return
        raise KernelDisconnected(
            f"The kernel was not signalled ({name}): {err.message}"
        ) from err


async def cleanup(provisioner: Any) -> None:
    """Have the broker remove the kernel's container; a gone kernel is fine."""
    if not getattr(provisioner, "brokered", False):
        return
    await asyncio.to_thread(_stop_quietly, provisioner)
    provisioner.brokered = False
    provisioner._swarm = None


def _stop_quietly(provisioner: Any) -> None:
    try:
        client_of(provisioner).stop(provisioner.kernel_id)
    except BrokerError as err:
        if err.status != 404:
            provisioner.log.warning(
                "Kernel %s: the broker did not remove it: %s", provisioner.kernel_id, err.message
            )


def _as_start_error(err: BrokerError) -> Exception:
    if err.status in (401, 403, 409):
        return KernelRefused(err.message)
    return KernelStartFailed(err.message)
