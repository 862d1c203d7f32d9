"""The kernel process of clients that ignore kernel provisioners.

Such a client writes a connection file (ports, key), runs the kernelspec's ``argv`` and
treats that process as the kernel: it connects to the ports, sends SIGINT to interrupt,
and terminates the process to stop it. The launcher makes that process stand for a gpuenv
kernel by driving the environment's own provisioner (DockerProvisioner or
LocalEnvProvisioner) through a jupyter_client KernelManager whose connection info is the
client's file, so the kernel binds exactly the client's ports and key, and the container
(labels, policy, mounts, uid, GPUs) or the activated conda env / venv is the one every
other client gets, from the same code.

While the kernel runs the launcher stays in the foreground: SIGINT becomes an interrupt of
the kernel, SIGTERM and SIGHUP a shutdown, the kernel's exit ends the launcher with the
kernel's exit code, and the container is removed on every way out. The container is
labelled with the launcher as its owner, so after a ``kill -9`` of the launcher the next
launcher or server start removes it (provisioning/orphans.py); a local kernel notices its
parent is gone (ipykernel's parent poller) and exits by itself.

A start failure prints the provisioner's message on stderr and exits with status 1. A
Docker environment of the kernel broker (``c.GpuEnv.broker_url``) is such a failure
before the broker is asked: the broker picks the kernel's ports, never the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from typing import Any, cast

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config

from ..config import GpuEnv
from ..config_check import load_checked_config
from ..environments.model import Environment, kernel_name_for
from ..errors import EnvironmentNotFound, GpuEnvError
from ..provisioning.container import orphans
from ..provisioning.kernel_side import CURVE_IPYKERNEL, curve_capable
from ..provisioning.kernelspecs import RESOURCES, kernelspec_dict
from ..services import Services, shared_services

POLL_INTERVAL = 0.5  # seconds between two checks that the kernel still runs
EXIT_START_FAILED = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

log = logging.getLogger("jupyter_gpuenv.launch")


class StartFailed(Exception):
    """The kernel did not start; the message says why, for the user."""


class _ReportedOnce(logging.Filter):
    """jupyter_client logs a failed start with its traceback; ours is said once, plainly."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, GpuEnvError)


class LauncherKernelManager(AsyncKernelManager):
    """A KernelManager over the client's connection file and one environment's spec.

    The client wrote the file and reads it: the manager neither rewrites nor removes it,
    and the kernel gets exactly its transport, ip, ports and key. CurveZMQ is used exactly
    when the file holds keys (the client's keys), never added by the provisioner: a key
    the client does not have would leave it unable to talk to the kernel.
    """

    def __init__(self, spec: KernelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._launcher_spec = spec
        self._client_info: dict[str, Any] = {}

    @property
    def kernel_spec(self) -> KernelSpec:
        return self._launcher_spec

    def load_client_file(self) -> None:
        """Read the client's file and take its encryption as this kernel's policy."""
        with open(self.connection_file) as f:
            info = json.load(f)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        self.load_connection_info(cast(KernelConnectionInfo, info))
        self._client_info = info
        encrypted = self.curve_secretkey is not None
        if encrypted and not zmq.has("curve"):
            raise StartFailed(
                "The connection file asks for CurveZMQ encryption, which this host's pyzmq "
                "(libzmq without libsodium) cannot provide."
            )
        # A policy set for this class is what the provisioners follow (kernel_side.use_curve).
        policy = "required" if encrypted else "disabled"
        self.update_config(Config({type(self).__name__: {"transport_encryption": policy}}))
        if encrypted:
            self._launcher_spec.metadata["supported_encryption"] = ["curve"]

    def write_connection_file(self, **kwargs: Any) -> None:
        """Nothing to write: the kernel must use exactly the client's ports and key."""

    def cleanup_connection_file(self) -> None:
        """The client removes its own file."""

    def _reconcile_connection_info(self, info: KernelConnectionInfo) -> None:
        """The provisioner's connection info must be the client's file, unchanged.

        jupyter_client would replace a file that differs; here that would take the file
        from under the client (and a kernel still starting), so it is a start failure.
        The comparison is with what the client wrote, as read before the start: a local
        kernel may be rewriting the same values into the file right now.
        """
        written = self._client_info
        # A value the file leaves out is the default on both sides; keys never are.
        differ = [
            name
            for name in CONNECTION_KEYS
            if (name in written or name.startswith("curve_"))
            and _text(info.get(name)) != _text(written.get(name))
        ]
        if differ:
            raise StartFailed(
                "The kernel's connection differs from the client's connection file in "
                + ", ".join(differ)
            )


# What a kernel and its client must agree on (jupyter_client's _equal_connections).
CONNECTION_KEYS = (
    "key",
    "curve_publickey",
    "curve_secretkey",
    "ip",
    "transport",
    "signature_scheme",
    "shell_port",
    "iopub_port",
    "stdin_port",
    "control_port",
    "hb_port",
)


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


class Launcher:
    """One kernel of one environment, for as long as this process lives."""

    def __init__(self, environment_id: str, connection_file: str, config: GpuEnv) -> None:
        self.environment_id = environment_id
        self.config = config
        self.connection_file = os.path.abspath(connection_file)
        self.km: LauncherKernelManager | None = None
        self.services: Services | None = None
        self.is_docker = False
        self._stop = asyncio.Event()
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> int:
        """Start the kernel, follow it, and shut it down; returns the exit status."""
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._stop_requested, signum)
        loop.add_signal_handler(signal.SIGINT, self._interrupt_requested)
        try:
            if not await self._start_unless_stopped():
                return 0
            return await self._follow()
        finally:
            await self._clean_up()
            if self.services is not None:
                self.services.stop()

    async def _start_unless_stopped(self) -> bool:
        """Whether the kernel started; a stop signal during the start abandons it."""
        start = asyncio.create_task(self._start())
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
            return False
        start.result()
        self._started = True
        return True

    async def _start(self) -> None:
        env = await self._environment()
        if env.kind == "docker" and self.config.broker_url:
            # The broker picks the kernel's ports and keys; this kernel must listen on the
            # client's. Refused before the broker is asked: it would start a container
            # the client could never reach.
            raise StartFailed(
                f"{env.display_name} is run by the kernel broker (c.GpuEnv.broker_url), "
                "which picks the kernel's ports itself, and a client that starts kernels "
                "from a kernelspec's argv (VS Code's local kernels) needs them on the ports "
                "of its own connection file. Use the kernel through your Jupyter server "
                "instead (VS Code: Select Kernel, Existing Jupyter Server)."
            )
        self.is_docker = env.kind == "docker"
        spec = KernelSpec(resource_dir=RESOURCES, **kernelspec_dict(env))
        km = LauncherKernelManager(
            spec,
            connection_file=self.connection_file,
            kernel_name=kernel_name_for(env.id),
            cache_ports=False,
            autorestart=False,
            log=log,
        )
        try:
            km.load_client_file()
        except (OSError, ValueError) as err:
            raise StartFailed(
                f"Cannot read the connection file {self.connection_file}: {err}"
            ) from err
        if km.curve_secretkey is not None and not curve_capable(env):
            # Its ipykernel would ignore the keys and the client would wait for nothing.
            raise StartFailed(
                f"The connection file asks for CurveZMQ encryption, which the ipykernel of "
                f"{env.name!r} cannot use (it needs ipykernel >= {CURVE_IPYKERNEL}); start "
                "the kernel with a connection file without curve keys."
            )
        self.km = km
        try:
            await km.start_kernel(
                kernel_id=str(uuid.uuid4()), cwd=os.getcwd(), env=dict(os.environ)
            )
        except GpuEnvError as err:
            raise StartFailed(err.message) from err
        log.info("Kernel %s of %s started", km.kernel_id, env.id)

    async def _environment(self) -> Environment:
        """The catalog entry, read with the configuration files a server would read."""
        services = self.services = shared_services(self.config, log)
        try:
            return await services.catalog.get(self.environment_id)
        except EnvironmentNotFound as err:
            raise StartFailed(
                f"Environment {self.environment_id!r} is not in the catalog: it was removed "
                "or is no longer configured. Pick another kernel, or reinstall the "
                "kernelspecs with `jupyter gpuenv kernelspecs install`."
            ) from err

    async def _follow(self) -> int:
        """Until the kernel exits (its status) or a stop signal (0, after the shutdown)."""
        km = self.km
        assert km is not None and km.provisioner is not None
        while not self._stop.is_set():
            code = await km.provisioner.poll()
            if code is not None:
                log.info("Kernel %s exited with status %s", km.kernel_id, code)
                return code
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), POLL_INTERVAL)
        await km.shutdown_kernel(now=True)
        return 0

    async def _clean_up(self) -> None:
        """Remove the container (or reap the process), whatever ended the launcher."""
        km = self.km
        if km is not None and km.provisioner is not None:
            try:
                if not self._started and km.provisioner.has_process:
                    await km.provisioner.kill()  # launched, but the start failed after
                await km.cleanup_resources()
            except Exception as err:
                log.warning("Kernel %s was not cleaned up: %s", km.kernel_id, err)

    def _stop_requested(self, signum: int) -> None:
        log.info("%s: shutting the kernel down", signal.Signals(signum).name)
        self._stop.set()

    def _interrupt_requested(self) -> None:
        """SIGINT: an interrupt of the running kernel; before it runs, a stop."""
        km = self.km
        if not self._started or km is None:
            self._stop_requested(signal.SIGINT)
            return
        task: asyncio.Task[Any] = asyncio.ensure_future(km.interrupt_kernel())
        self._tasks.add(task)
        task.add_done_callback(self._interrupt_done)

    def _interrupt_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("The kernel could not be interrupted: %s", task.exception())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_gpuenv.launch",
        description="Run the kernel of a jupyter-gpuenv environment for a client that starts "
        "kernelspec argv itself (VS Code's local kernels and others).",
    )
    parser.add_argument("--environment", required=True, metavar="ID", help="environment id")
    parser.add_argument(
        "-f", dest="connection_file", required=True, metavar="FILE", help="connection file"
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what the launcher reports on stderr (default: WARNING)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="[gpuenv launcher] %(message)s"
    )
    log.addFilter(_ReportedOnce())
    try:
        # As the server: an invalid setting is logged and keeps its default.
        config = load_checked_config(log=log)
    except Exception as err:
        print(f"The kernel could not start: the configuration files: {err}", file=sys.stderr)
        return EXIT_START_FAILED
    launcher = Launcher(args.environment, args.connection_file, config)
    try:
        return asyncio.run(launcher.run())
    except StartFailed as err:
        print(f"The kernel could not start: {err}", file=sys.stderr)
        return EXIT_START_FAILED
    except Exception as err:
        log.debug("Launcher failure", exc_info=True)
        print(f"The kernel launcher failed: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_START_FAILED
    finally:
        if launcher.is_docker:
            # A start abandoned while Docker was creating the container leaves one that no
            # provisioner knows of; it carries this process as its owner.
            orphans.remove_own_containers(config.docker_host or None, log)
