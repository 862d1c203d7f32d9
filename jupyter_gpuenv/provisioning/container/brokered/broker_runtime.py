"""A kernel the kernel broker runs for this Hub user: the single-user server's half.

With ``c.GpuEnv.broker_url`` the server has no Docker access. The start sends the
environment, the kernelspec's provisioner config, the notebook folder and the kernel's
HMAC key; the broker (jupyter_gpuenv/broker) applies the admin's policy for this Hub
user, starts the container and answers with the ports (and CurveZMQ keys) the kernel
listens on, which become the connection file. Poll, signal, logs and removal are calls
of their own; a refusal keeps the broker's words and status (403 for policy, 409 for a
quota's GPUs in use).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from ....broker_client import BrokerClient, BrokerError
from ...kernel_errors import (
    KernelDisconnected,
    KernelRefused,
    KernelStartFailed,
    SignalNotDelivered,
)
from ..control_channel import ControlChannel
from ..readiness import PORT_NAMES
from ..runtime import KernelRuntime, KernelStart, RuntimeContext, record_text

START_TIMEOUT_MARGIN = 120.0


class BrokeredRuntime(KernelRuntime):
    """One kernel the broker at ``context.broker_url`` runs for this server's user."""

    kind = "brokered"

    def __init__(self, context: RuntimeContext) -> None:
        super().__init__(context)
        self.client = BrokerClient(context.broker_url)
        self.started = False
        self.asked = False  # a start was sent: the broker may hold a kernel to remove
        self.container_name: str | None = None
        self.image: str | None = None
        # Interrupts where a signal cannot reach: only with the kernel's manager.
        self.control = ControlChannel(context.manager) if context.manager else None
        self.where: dict[str, Any] | None = None  # the broker runs Swarm: where it landed

    async def prepare(self, start: KernelStart) -> None:
        """The broker picks the ports and applies the policy: only the id is checked."""
        if not start.environment_id:
            raise KernelStartFailed(
                "This kernelspec names gpuenv-docker-provisioner without "
                "metadata.kernel_provisioner.config.environment_id."
            )

    async def create(self, start: KernelStart) -> dict[str, Any]:
        km = start.manager
        body = {
            "kernel_id": start.kernel_id,
            "environment_id": start.environment_id,
            "key": km.session.key.decode(),
            "signature_scheme": km.session.signature_scheme,
            "cwd": start.cwd,
            "config": dict(start.requested_config),
            "session_name": start.session_name,
            "transport_encryption": start.transport_encryption,
            "kernel_name": start.kernel_name,
        }
        start.progress.step("broker", "Asking the kernel broker to start the kernel")
        timeout = start.preparation.owner.gpuenv_config.kernel_start_timeout
        self.asked = True
        try:
            answer = await asyncio.to_thread(
                self.client.start, body, timeout + START_TIMEOUT_MARGIN
            )
        except BrokerError as err:
            raise _as_start_error(err) from err
        self.started = True
        connection = answer.get("connection") or {}
        kernel = answer.get("kernel") or {}
        try:
            for name in PORT_NAMES:
                setattr(km, name, int(connection[name]))
        except (KeyError, TypeError, ValueError) as err:
            await self.remove()
            raise KernelStartFailed(f"The kernel broker answered without the port {err}.") from err
        km.ip = str(connection.get("ip") or km.ip)
        if connection.get("curve_publickey"):
            km.curve_publickey = str(connection["curve_publickey"]).encode()
            km.curve_secretkey = str(connection.get("curve_secretkey") or "").encode() or None
        km.write_connection_file(jupyter_session=start.session_name)
        self.container_name = _text(kernel.get("container"))
        self.image = _text(kernel.get("image"))
        start.start_warning = _text(answer.get("start_warning"))
        placement = kernel.get("placement")
        self.where = _placement(placement) if isinstance(placement, dict) else None
        return dict(km.get_connection_info())

    @property
    def exists(self) -> bool:
        return self.started

    async def poll(self) -> int | None:
        """None while the broker reports the kernel running; its exit code (-1: gone)."""
        if not self.started:
            return 0
        try:
            kernel = await asyncio.to_thread(self.client.kernel, self.context.kernel_id)
        except BrokerError as err:
            if err.status == 404:
                return -1
            return None  # the broker restarting: the kernel runs on, ask again
        if kernel.get("running"):
            return None
        code = kernel.get("exit_code")
        return int(code) if isinstance(code, int) else 0

    async def signal(self, signum: int) -> None:
        """Through the broker; a Swarm kernel's interrupt goes on its control channel."""
        if not self.started:
            return
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.where is not None and self.control is not None:
            self.control.interrupt()
            return
        try:
            await asyncio.to_thread(self.client.signal, self.context.kernel_id, name)
        except BrokerError as err:
            if err.status == 404:
                return
            if err.status == 409:
                raise SignalNotDelivered(err.message) from err
            raise KernelDisconnected(
                f"The kernel was not signalled ({name}): {err.message}"
            ) from err

    async def remove(self, requested: bool = True) -> None:
        """Have the broker remove the kernel's container; a gone kernel is fine."""
        if self.control is not None:
            self.control.close()
        if not (self.started or self.asked):
            return
        try:
            await asyncio.to_thread(self.client.stop, self.context.kernel_id)
        except BrokerError as err:
            if err.status != 404:
                self.log.warning(
                    "Kernel %s: the broker did not remove it: %s",
                    self.context.kernel_id,
                    err.message,
                )
        self.started = self.asked = False
        self.where = None

    async def logs(self) -> str:
        if not self.started:
            return ""
        try:
            return await asyncio.to_thread(self.client.logs, self.context.kernel_id)
        except BrokerError as err:
            return f"(logs unavailable: {err.message})"

    def placement(self) -> dict[str, Any] | None:
        return dict(self.where) if self.where is not None else None

    def describe(self) -> dict[str, Any]:
        return {"id": None, "name": self.container_name, "image": self.image, "broker": True}

    def keep_after_exit(self) -> None:
        """Nothing to do: the broker, not this process, holds the kernel."""

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "started": self.started,
            "container_name": self.container_name,
            "image": self.image,
            "placement": self.where,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], context: RuntimeContext) -> BrokeredRuntime:
        runtime = cls(context)
        runtime.started = bool(record.get("started"))
        runtime.container_name = record_text(record, "container_name") or None
        runtime.image = record_text(record, "image") or None
        placement = record.get("placement")
        runtime.where = _placement(placement) if isinstance(placement, dict) else None
        return runtime


def _text(value: object) -> str | None:
    return str(value) if value else None


def _placement(data: dict[str, Any]) -> dict[str, Any]:
    """The broker's placement of a Swarm kernel: its service, node and GPUs."""
    return {
        "service": str(data.get("service") or ""),
        "node": str(data.get("node") or ""),
        "node_addr": str(data.get("node_addr") or ""),
        "gpus": [str(g) for g in data.get("gpus") or []],
    }


def _as_start_error(err: BrokerError) -> Exception:
    if err.status in (401, 403, 409):
        return KernelRefused(err.message)
    return KernelStartFailed(err.message)
