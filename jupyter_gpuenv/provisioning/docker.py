"""Kernels in Docker containers, owned by the provisioner from create to remove.

jupyter_client asks the provisioner to launch, poll, signal, wait for, kill and clean up
"the kernel process"; here that process is a container, handled through the Docker API
(docker-py's sync calls run in threads). The container:

* runs the image's python with ipykernel on the host network, binding the 127.0.0.1
  ports of the connection file, which is mounted read-only; with CurveZMQ keys in it
  (when the image's ipykernel reads them) the kernel starts from a private writable copy
  on a tmpfs of its own uid, as ipykernel rewrites the file;
* has docker-init as PID 1, so ``docker kill --signal SIGINT`` reaches the kernel as a
  KeyboardInterrupt (interrupt) and exits with it;
* runs as the server's uid:gid (a root server's: the notebook folder's owner, else uid 0
  without capabilities) with the notebook folder mounted at the same path as its working
  directory, so files belong to the user and relative paths work;
* is created only through the last gate (launch_gate.py), which refuses any argument
  beyond the admin's policy whatever produced it;
* is labelled with the kernel, the environment and the server instance (orphans.py
  removes it if the server dies) and removed on shutdown and on every restart (a restart
  is a new container: fresh state, the old one gone).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import secrets
import signal
import time
from typing import Any

import zmq
from docker.errors import APIError, ImageNotFound, NotFound
from jupyter_client.connect import KernelConnectionInfo, LocalPortCache
from jupyter_client.provisioning import KernelProvisionerBase

from ..docker import labels
from ..docker.client import DaemonUnreachable
from ..docker.nvidia_runtime import detect_runtime
from ..docker.runs import explanation
from ..environments.model import Environment
from ..errors import PolicyViolation
from . import brokered_kernel, kernel_history, orphans, start_progress, swarm_kernel
from .base import GpuEnvProvisionerMixin
from .container_spec import (
    ContainerRequest,
    allowance_for,
    connection_file_for,
    container_user,
    create_arguments,
)
from .container_watch import UNREACHABLE, mark_reachable, mark_unreachable, read_container_exit
from .errors import KernelDisconnected, KernelRefused, KernelStartFailed
from .gpu_request import plan_gpus
from .kernel_layer import ensure_layer, image_has_ipykernel
from .kernel_side import START_WARNING_ENV, use_curve
from .launch_gate import SECRETS_STAY_OUT, check_create_arguments, is_secret_variable
from .orphans import private_connection_dir
from .policy import DOCKER_KEYS, EffectiveLaunch
from .readiness import PORT_NAMES, container_state, wait_until_ready
from .swarm import SwarmPlacement


# KernelProvisionerBase's metaclass derives from traitlets' and ABCMeta; mypy cannot see it.
class DockerProvisioner(GpuEnvProvisionerMixin, KernelProvisionerBase):  # type: ignore[metaclass]
    """Runs an ipykernel inside a container of a catalog Docker environment."""

    container_id: str | None = None
    container_name: str | None = None
    image: str | None = None
    cwd: str | None = None
    ports_cached = False
    _exited = False
    _exit_recorded = False
    _connection_copy: str | None = None
    _env: Environment | None = None
    _launch: EffectiveLaunch | None = None
    _swarm: SwarmPlacement | None = None  # swarm mode: the kernel's service
    _curve = False
    _progress: start_progress.StartProgress | None = None
    _extra_arguments: list[str] = []  # noqa: RUF012 (replaced per launch, never mutated)
    brokered = False  # started by the kernel broker (c.GpuEnv.broker_url)
    _transport_encryption: str | None = None

    @property
    def has_process(self) -> bool:
        running = self.container_id is not None or self._swarm is not None or self.brokered
        return running and not self._exited

    # -- start ---------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Resolve the environment and policy, pick ports, write the connection file."""
        progress = self._progress = start_progress.begin(self.kernel_id or "", self.environment_id)
        progress.step("environment", f"Looking up environment {self.environment_id}")
        try:
            return await self._pre_launch(progress, **kwargs)
        except BaseException as err:
            progress.fail(_reason(err))
            raise

    async def _pre_launch(
        self, progress: start_progress.StartProgress, **kwargs: Any
    ) -> dict[str, Any]:
        if brokered_kernel.enabled(self):
            # The broker applies the admin's policy for this Hub user and picks the ports.
            if not self.environment_id:
                raise KernelStartFailed(
                    "This kernelspec names gpuenv-docker-provisioner without "
                    "metadata.kernel_provisioner.config.environment_id."
                )
            self._transport_encryption = kwargs.pop("transport_encryption", None)
            kwargs.pop("extra_arguments", None)
            kwargs = await super().pre_launch(**kwargs)
            kwargs["cmd"] = []
            return kwargs
        env = await self.resolve_environment()
        progress.environment_name, progress.display_name = env.name, env.display_name
        if env.kind != "docker":
            raise KernelStartFailed(
                f"Environment {env.id!r} is a {env.kind} environment; its kernelspec must use "
                "gpuenv-local-provisioner."
            )
        self._env = env
        self._launch = self.apply_policy(env, DOCKER_KEYS)
        self.check_compatibility(env)
        km = self.parent
        if km is None:
            raise KernelStartFailed("Docker kernels need a KernelManager as parent.")
        if km.transport != "tcp":
            raise KernelStartFailed("Docker kernels need the tcp transport.")
        self._provision_curve_keys(km, kwargs.pop("transport_encryption", None), env)
        if not self.ports_cached:
            # Ports are fixed before the start: the kernel cannot write the ports it
            # picked into the read-only connection file.
            cache = LocalPortCache.instance()
            for name in PORT_NAMES:
                if km.cache_ports or not getattr(km, name):
                    setattr(km, name, cache.find_available_port(km.ip))
            self.ports_cached = True
        session = (kwargs.get("env") or {}).get("JPY_SESSION_NAME", "")
        km.write_connection_file(jupyter_session=session)
        self.connection_info = km.get_connection_info()
        self._extra_arguments = list(kwargs.pop("extra_arguments", None) or [])
        # The command is the container's (container_spec.kernel_command), not a host argv.
        kwargs = await super().pre_launch(**kwargs)
        kwargs["cmd"] = []
        return kwargs

    def _provision_curve_keys(self, km: Any, requested: str | None, env: Environment) -> None:
        """CurveZMQ keys in the connection file when this kernel's ipykernel reads them.

        As for local kernels (``use_curve``): the kernel manager's ``transport_encryption``
        decides when set, else the image's ipykernel (>= 7.4, or the kernel layer's). A
        kernelspec's own image was not probed by the catalog: only "required" encrypts it.
        The kernel starts from a private writable copy of the file (container_spec).
        """
        _, launch = self._prepared()
        probed_image = not launch.image or launch.image == env.location.get("image")
        encrypt = use_curve(km, requested, env if probed_image else None)
        if encrypt and km.curve_publickey is None:
            km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
        elif not encrypt:
            km.curve_publickey = km.curve_secretkey = None
        self._curve = encrypt

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Create and start the container; return once the kernel's ports answer."""
        progress = self._progress or start_progress.begin(
            self.kernel_id or "", self.environment_id
        )
        try:
            info = await self._launch_container(progress, **kwargs)
        except BaseException as err:
            progress.fail(_reason(err))
            raise
        progress.finish(f"Kernel ready in {time.time() - progress.started:.1f} s")
        return info

    async def _launch_container(
        self, progress: start_progress.StartProgress, **kwargs: Any
    ) -> KernelConnectionInfo:
        self._exited = False
        self._exit_recorded = False
        kernel_history.history_of(self.kernel_id or "").starts += 1
        self.cwd = kwargs.get("cwd") or os.getcwd()
        if brokered_kernel.enabled(self):
            return await brokered_kernel.launch(self, progress, self.cwd, kwargs.get("env") or {})
        try:
            client = await asyncio.to_thread(self.services.docker, True)
        except DaemonUnreachable as err:
            raise KernelStartFailed(err.message) from err
        await asyncio.to_thread(orphans.remove_orphans_once, client, self.log)
        image_id, python = await self._kernel_image(client, progress)
        if self.gpuenv_config.scheduler == "swarm":
            env_vars = kwargs.get("env") or {}
            try:
                return await swarm_kernel.launch(
                    self, client, image_id, python, env_vars, progress
                )
            except BaseException:
                self._remove_connection_copy()
                raise
        try:
            request = await asyncio.to_thread(
                self._container_request, client, image_id, python, kwargs.get("env") or {}
            )
            started = time.monotonic()
            progress.step("container", f"Starting a container of {self.image}")
            container = await asyncio.to_thread(self._create, client, request)
        except BaseException:
            self._remove_connection_copy()
            raise
        self.container_id, self.container_name = container.id, container.name
        orphans.track(container.id, self.gpuenv_config.docker_host or None)
        try:
            await asyncio.to_thread(container.start)
            progress.step("kernel", "Waiting for the kernel to answer", waiting_for="kernel")
            await wait_until_ready(
                client,
                container,
                self.connection_info,
                self.gpuenv_config.kernel_start_timeout,
                self.image or "",
            )
        except BaseException as err:
            await self._discard(client)
            if isinstance(err, APIError):
                raise KernelStartFailed(
                    f"Docker could not start the kernel container: {explanation(err)}"
                ) from err
            raise
        self.log.info(
            "Kernel %s: container %s of %s ready in %.2f s",
            self.kernel_id,
            self.container_name,
            self.image,
            time.monotonic() - started,
        )
        return self.connection_info

    def _prepared(self) -> tuple[Environment, EffectiveLaunch]:
        if self._env is None or self._launch is None:
            raise KernelStartFailed("The kernel was launched before pre_launch resolved it.")
        return self._env, self._launch

    async def _kernel_image(
        self, client: Any, progress: start_progress.StartProgress
    ) -> tuple[str, str]:
        """The image to run (a kernel layer when it lacks ipykernel) and its python."""
        env, launch = self._prepared()
        ref = launch.image or env.location.get("image")
        if not ref:
            raise KernelStartFailed(f"Environment {env.id!r} names no image.")
        self.image = ref
        progress.step("image", f"Checking the image {ref}")
        try:
            image = await asyncio.to_thread(client.images.get, ref)
        except ImageNotFound as err:
            raise KernelStartFailed(
                f"Image {ref} is not present locally. Get it with `docker pull {ref}` (or "
                "build it), then start the kernel again."
            ) from err
        # The catalog's ipykernel answer holds for the image it probed; another image
        # (a kernelspec's own, or the tag rebuilt since) is probed here, once per id.
        known_id = env.location.get("image_id")
        same_image = ref == env.location.get("image") and known_id in (None, image.id)
        python = (env.python_executable if same_image else None) or "python3"
        timeout = self.gpuenv_config.image_build_timeout
        # Without a python version the catalog's probe never ran (Docker was down, it
        # timed out): its ipykernel=False is no fact, so the image is asked here.
        probed = env.python_version is not None
        if same_image and probed and env.ipykernel:
            return image.id, python
        if not (same_image and probed):
            progress.step("image-probe", f"Checking whether {ref} has ipykernel")
            if await asyncio.to_thread(image_has_ipykernel, client, image.id, python, timeout):
                return image.id, python
        layer = await asyncio.to_thread(
            ensure_layer, client, image.id, ref, python, timeout, self.log, progress
        )
        return layer, python

    def _container_request(
        self, client: Any, image_id: str, python: str, server_env: dict[str, str]
    ) -> ContainerRequest:
        (env, launch), config = self._prepared(), self.gpuenv_config
        # The admin's entry as read at launch, then what the policy let through; never
        # the catalog's copy (its cache file is the user's to write).
        settings = launch.settings()
        # Ours, for the kernel side: how the previous kernel process ended, and the
        # doctor's warning when an incompatible start was allowed.
        kernel_notes = dict(kernel_history.previous_exit_environment(self.kernel_id))
        if self.start_warning:
            kernel_notes[START_WARNING_ENV] = self.start_warning
        if kernel_notes:
            settings["environment"] = {**(settings.get("environment") or {}), **kernel_notes}
        gpu_plan = plan_gpus(launch.gpus, detect_runtime(client))
        for note in gpu_plan.notes:
            self.log.warning("Kernel %s (%s): %s", self.kernel_id, env.name, note)
        user, _ = container_user(self.cwd, config.docker_allow_root, settings.get("user"))
        km = self.parent
        if km is None:
            raise KernelStartFailed("Docker kernels need a KernelManager as parent.")
        original = os.path.realpath(km.connection_file)
        copy = connection_file_for(
            user, original, private_connection_dir, self.kernel_id or "kernel"
        )
        self._connection_copy = copy
        allowlist = list(config.docker_environment_allowlist)
        secret = [name for name in allowlist if is_secret_variable(name)]
        if secret:
            self.log.warning(
                "Kernel %s: %s not passed to the container: %s",
                self.kernel_id,
                ", ".join(secret),
                SECRETS_STAY_OUT,
            )
        conda_env = env.location.get("conda_env")
        image_attrs = client.images.get(image_id).attrs.get("Config") or {}
        return ContainerRequest(
            kernel_id=self.kernel_id or "",
            environment_id=env.id,
            image=image_id,
            python=python,
            connection_file=copy or original,
            cwd=self.cwd,
            settings=settings,
            instance=orphans.this_instance(),
            hub_user=config.hub_user,
            server_env=dict(os.environ),
            env_allowlist=[name for name in allowlist if name not in secret],
            image_env=list(image_attrs.get("Env") or []),
            gpu_environment=gpu_plan.environment,
            device_requests=gpu_plan.device_requests,
            allow_root=config.docker_allow_root,
            conda_prefix_in_image=os.path.dirname(os.path.dirname(python)) if conda_env else None,
            session_name=server_env.get("JPY_SESSION_NAME"),
            extra_arguments=self._extra_arguments,
            curve=self._curve,
        )

    def checked_arguments(self, request: ContainerRequest) -> dict[str, Any]:
        """The container's create arguments, behind the last gate: nothing beyond the
        policy passes, whichever scheduler then runs them."""
        _, launch = self._prepared()
        args = create_arguments(request)
        try:
            check_create_arguments(args, allowance_for(request, launch.gpus))
        except PolicyViolation as err:
            raise KernelRefused(err.message) from err
        return args

    def _create(self, client: Any, request: ContainerRequest) -> Any:
        """Docker's create of the gated arguments."""
        args = self.checked_arguments(request)
        try:
            return client.containers.create(**args)
        except APIError as err:
            if err.status_code != 409:
                raise KernelStartFailed(
                    f"Docker could not create the kernel container: {explanation(err)}"
                ) from err
        # Name taken: a leftover of this kernel is replaced, anything else keeps its name.
        try:
            other = client.containers.get(args["name"])
            if (other.labels or {}).get(labels.KERNEL_ID) == request.kernel_id:
                other.remove(force=True)
            else:
                args["name"] = f"{args['name']}-{secrets.token_hex(2)}"
        except NotFound:
            pass
        try:
            return client.containers.create(**args)
        except APIError as err:
            raise KernelStartFailed(
                f"Docker could not create the kernel container: {explanation(err)}"
            ) from err

    # -- life ----------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the container runs, else its exit code (-1 when it vanished)."""
        if self.brokered:
            return await brokered_kernel.poll(self)
        if self._swarm is not None:
            return await swarm_kernel.poll(self)
        if self.container_id is None:
            return 0
        try:
            client = self.services.docker()
            state = await asyncio.to_thread(container_state, client, self.container_id)
        except NotFound:
            self._docker_back()
            self._record_exit(kernel_history.vanished_exit())
            return -1
        except APIError:
            return None  # cannot tell; a daemon hiccup must not trigger a restart
        except UNREACHABLE as err:
            self._docker_lost(err)
            return None  # the container may well run on: wait for Docker, then see
        self._docker_back()
        if state.get("Running"):
            return None
        if not getattr(self.parent, "shutting_down", False):
            await self._capture_exit(client, requested=False)  # a death, not a shutdown
        return int(state.get("ExitCode") or 0)

    async def wait(self) -> int | None:
        """Until the container has stopped; the container stays until cleanup()."""
        while True:
            code = await self.poll()
            if code is not None:
                self._exited = True
                return code
            await asyncio.sleep(0.1)

    async def send_signal(self, signum: int) -> None:
        """``docker kill --signal``: docker-init passes it on to the kernel process."""
        if self.brokered:
            await brokered_kernel.send_signal(self, signum)
            return
        if self._swarm is not None:
            await swarm_kernel.send_signal(self, signum)
            return
        if self.container_id is None:
            return
        try:
            await asyncio.to_thread(
                self.services.docker().api.kill, self.container_id, signal.Signals(signum).name
            )
        except NotFound:
            pass
        except APIError as err:
            if err.status_code != 409:  # 409: not running any more
                raise
        except UNREACHABLE as err:
            message = self._docker_lost(err)
            raise KernelDisconnected(
                f"The kernel is disconnected from Docker: {message} The kernel was not "
                f"signalled ({signal.Signals(signum).name}); it is reconnected by itself when "
                "Docker answers again."
            ) from err

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        """Remove the container (every time: a restart starts a new one) and free ports."""
        if self.brokered or brokered_kernel.enabled(self):
            await brokered_kernel.cleanup(self)
            if not restart:
                kernel_history.forget(self.kernel_id or "")
            return
        await swarm_kernel.cleanup(self)
        try:
            client = self.services.docker()
        except DaemonUnreachable as err:
            self.log.warning(
                "Kernel %s: container %s not removed: %s", self.kernel_id, self.container_name, err
            )
            client = None
        if client is not None:
            await self._capture_exit(client, requested=True)
            await self._discard(client)
        if not restart:
            kernel_history.forget(self.kernel_id or "")
        if self.ports_cached and not restart:
            cache = LocalPortCache.instance()
            for name in PORT_NAMES:
                port = self.connection_info.get(name)
                if isinstance(port, int):
                    cache.return_port(port)
            self.ports_cached = False

    async def _discard(self, client: Any) -> None:
        container_id = self.container_id
        if container_id is not None:
            try:
                await asyncio.to_thread(client.api.remove_container, container_id, force=True)
            except NotFound:
                pass
            except APIError as err:
                self.log.warning(
                    "Kernel %s: could not remove container %s: %s",
                    self.kernel_id,
                    self.container_name,
                    explanation(err),
                )
            except UNREACHABLE as err:  # left to this process's exit or the next orphan sweep
                self.log.warning(
                    "Kernel %s: container %s not removed: %s",
                    self.kernel_id,
                    self.container_name,
                    err,
                )
            else:
                orphans.untrack(container_id)
        self.container_id = None
        self._exited = True
        self._remove_connection_copy()

    def _remove_connection_copy(self) -> None:
        if self._connection_copy:
            pathlib.Path(self._connection_copy).unlink(missing_ok=True)
            self._connection_copy = None

    # -- what happened -------------------------------------------------------------

    async def _capture_exit(self, client: Any, requested: bool) -> None:
        """Keep why the container ended (state, OOM kill, last log lines) before removal."""
        if self.container_id is not None and not self._exit_recorded:
            exit_ = await read_container_exit(client, self.container_id, requested)
            if exit_ is not None:
                self._record_exit(exit_)

    def _record_exit(self, exit_: kernel_history.KernelExit) -> None:
        if self._exit_recorded:
            return
        self._exit_recorded = True
        kernel_history.history_of(self.kernel_id or "").last_exit = exit_
        if not exit_.requested:
            self.log.warning(
                "Kernel %s: container %s ended: %s",
                self.kernel_id,
                self.container_name,
                exit_.reason,
            )

    def _docker_lost(self, err: BaseException) -> str:
        docker_host = self.gpuenv_config.docker_host or None
        return mark_unreachable(self.kernel_id or "", err, docker_host, self.parent, self.log)

    def _docker_back(self) -> None:
        mark_reachable(self.kernel_id or "", self.parent, self.log, self.container_name)

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
        """The base record plus what finds the container again."""
        info = await super().get_provisioner_info()
        info.update(
            {
                "container_id": self.container_id,
                "container_name": self.container_name,
                "image": self.image,
                "environment_id": self.environment_id,
                "cwd": self.cwd,
                "ports_cached": self.ports_cached,
                "brokered": self.brokered,
            }
        )
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        """Inverse of get_provisioner_info: re-attach to a running container."""
        await super().load_provisioner_info(provisioner_info)
        self.container_id = provisioner_info.get("container_id")
        self.container_name = provisioner_info.get("container_name")
        self.image = provisioner_info.get("image")
        self.environment_id = provisioner_info.get("environment_id") or self.environment_id
        self.cwd = provisioner_info.get("cwd")
        self.ports_cached = bool(provisioner_info.get("ports_cached"))
        self.brokered = bool(provisioner_info.get("brokered"))
        self._exited = False
        if self.container_id:
            orphans.track(self.container_id, self.gpuenv_config.docker_host or None)




def _reason(err: BaseException) -> str:
    """What a failed start's progress says: our message, else the error itself."""
    if isinstance(err, asyncio.CancelledError):
        return "The start was cancelled."
    return str(getattr(err, "message", None) or err) or type(err).__name__
