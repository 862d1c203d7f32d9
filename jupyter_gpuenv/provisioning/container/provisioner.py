"""Kernels in Docker containers, owned by the provisioner from create to remove.

jupyter_client asks the provisioner to launch, poll, signal, wait for, kill and clean up
"the kernel process"; here that process is a container, and where it runs is a runtime
(runtime.py) picked once per kernel from the admin's configuration: this server's
Docker engine, a Swarm service, or a container the kernel broker runs for this Hub user.
The provisioner keeps what every runtime shares (start progress, the kernel history,
ports, persistence) and hands every step to the runtime.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import time
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase

from .. import kernel_history, start_progress
from ..kernel_errors import KernelStartFailed, SignalNotDelivered
from ..provisioner_base import GpuEnvProvisionerMixin
from .preparation import ContainerPreparation
from .runtime import KernelRuntime, KernelStart, RuntimeContext
from .runtimes import RUNTIMES, earlier_record, runtime_kind


# KernelProvisionerBase's metaclass derives from traitlets' and ABCMeta; mypy cannot see it.
class DockerProvisioner(GpuEnvProvisionerMixin, KernelProvisionerBase):  # type: ignore[metaclass]
    """Runs an ipykernel inside a container of a catalog Docker environment."""

    cwd: str | None = None
    _runtime: KernelRuntime | None = None
    _preparation: ContainerPreparation | None = None
    _start: KernelStart | None = None
    _exited = False

    # -- the runtime ---------------------------------------------------------------

    @property
    def runtime(self) -> KernelRuntime | None:
        """Where this kernel runs; None before the first start."""
        return self._runtime

    @property
    def preparation(self) -> ContainerPreparation:
        """The environment, policy and image of this kernel's container."""
        if self._preparation is None:
            self._preparation = ContainerPreparation(self)
        return self._preparation

    def _context(self) -> RuntimeContext:
        config = self.gpuenv_config
        return RuntimeContext(
            kernel_id=self.kernel_id or "",
            log=self.log,
            docker=lambda ping: self.services.docker(ping),
            docker_host=config.docker_host or None,
            manager=self.parent,
            broker_url=config.broker_url,
        )

    @property
    def has_process(self) -> bool:
        return self._runtime is not None and self._runtime.exists and not self._exited

    # -- start ---------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Pick the runtime, which resolves what must be known before the start."""
        progress = start_progress.begin(self.kernel_id or "", self.environment_id)
        progress.step("environment", f"Looking up environment {self.environment_id}")
        try:
            if self._runtime is None:
                self._runtime = RUNTIMES[runtime_kind(self.gpuenv_config)](self._context())
            km = self.parent
            if km is None:
                raise KernelStartFailed("Docker kernels need a KernelManager as parent.")
            self._start = KernelStart(
                kernel_id=self.kernel_id or "",
                environment_id=self.environment_id,
                manager=km,
                progress=progress,
                preparation=self.preparation,
                requested_config=dict(self.requested_config),
                kernel_name=getattr(self.kernel_spec, "name", None)
                or getattr(km, "kernel_name", None)
                or "",
                transport_encryption=kwargs.pop("transport_encryption", None),
                extra_arguments=list(kwargs.pop("extra_arguments", None) or []),
                session_name=(kwargs.get("env") or {}).get("JPY_SESSION_NAME", ""),
            )
            await self._runtime.prepare(self._start)
            self.connection_info = km.get_connection_info()
            # The command is the runtime's (request.kernel_command), not a host argv.
            kwargs = await super().pre_launch(**kwargs)
        except BaseException as err:
            progress.fail(start_progress.reason_of(err))
            raise
        kwargs["cmd"] = []
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Start the kernel in its runtime; return once the kernel's ports answer."""
        start, runtime = self._start, self._runtime
        if start is None or runtime is None:
            raise RuntimeError("launch_kernel before pre_launch")
        self._exited = False
        kernel_history.history_of(self.kernel_id or "").starts += 1
        self.cwd = start.cwd = kwargs.get("cwd") or os.getcwd()
        start.server_env = dict(kwargs.get("env") or {})
        try:
            info = await runtime.create(start)
        except BaseException as err:
            start.progress.fail(start_progress.reason_of(err))
            raise
        if start.start_warning:
            self.start_warning = start.start_warning
        self.connection_info = info  # type: ignore[assignment]
        start.progress.finish(f"Kernel ready in {time.time() - start.progress.started:.1f} s")
        return self.connection_info

    # -- life ----------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the kernel runs, else its exit code (-1 when it vanished)."""
        if self._runtime is None:
            return 0
        return await self._runtime.poll()

    async def wait(self) -> int | None:
        """Until the kernel has stopped; its container stays until cleanup()."""
        while True:
            code = await self.poll()
            if code is not None:
                self._exited = True
                return code
            await asyncio.sleep(0.1)

    async def send_signal(self, signum: int) -> None:
        """The runtime's delivery: ``docker kill --signal``, the control channel, the broker."""
        if self._runtime is None:
            return
        try:
            await self._runtime.signal(signum)
        except SignalNotDelivered as err:
            if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                raise
            self.log.warning("Kernel %s: %s", self.kernel_id, err.message)

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        """Remove the kernel (every time: a restart starts a new one) and free its ports."""
        if self._runtime is not None:
            await self._runtime.remove(requested=True)
        self._exited = True
        if not restart:
            kernel_history.forget(self.kernel_id or "")
            self.preparation.return_ports()

    # -- what the REST API shows ---------------------------------------------------

    def placement(self) -> dict[str, Any] | None:
        """The node and GPUs of a kernel that runs on another host; None otherwise."""
        return self._runtime.placement() if self._runtime is not None else None

    def _described(self) -> dict[str, Any]:
        return self._runtime.describe() if self._runtime is not None else {}

    @property
    def container_id(self) -> str | None:
        return self._described().get("id")

    @property
    def container_name(self) -> str | None:
        return self._described().get("name")

    @property
    def image(self) -> str | None:
        return self._described().get("image")

    @property
    def brokered(self) -> bool:
        return bool(self._described().get("broker"))

    def resolve_path(self, path_str: str) -> str | None:
        """Paths resolve like local kernels: the notebook folder is mounted at its path."""
        path = pathlib.Path(path_str).expanduser()
        if not path.is_absolute() and self.cwd:
            path = (pathlib.Path(self.cwd) / path).resolve()
        return path.as_posix() if path.exists() else None

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, self.gpuenv_config.kernel_start_timeout)

    # -- persistence ---------------------------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        """The base record plus the runtime's, which finds the kernel again."""
        info = await super().get_provisioner_info()
        info.update(
            {
                "environment_id": self.environment_id,
                "cwd": self.cwd,
                "ports_cached": self.preparation.ports_cached,
                "cached_ports": list(self.preparation.cached_ports),
                "runtime": self._runtime.record() if self._runtime is not None else None,
            }
        )
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        """Inverse of get_provisioner_info: re-attach to the running kernel."""
        await super().load_provisioner_info(provisioner_info)
        self.environment_id = provisioner_info.get("environment_id") or self.environment_id
        self.cwd = provisioner_info.get("cwd")
        self.preparation.ports_cached = bool(provisioner_info.get("ports_cached"))
        ports = provisioner_info.get("cached_ports") or []
        self.preparation.cached_ports = [p for p in ports if isinstance(p, int)]
        record = provisioner_info.get("runtime") or earlier_record(provisioner_info)
        self._runtime = None
        if isinstance(record, dict):
            kind = RUNTIMES.get(str(record.get("kind")))
            if kind is None:
                raise ValueError(f"Unknown kernel runtime {record.get('kind')!r}")
            self._runtime = kind.from_record(record, self._context())
        self._exited = False
