"""What a container kernel runs, decided before any runtime starts it.

For the runtimes that run the container themselves (the engine, Swarm): the catalog's
environment, the admin's policy for it, the doctor's verdict, CurveZMQ keys, the ports
and the connection file; then the image (a kernel layer when it lacks ipykernel) and the
container request, whose create arguments pass the last gate (policy/launch_gate.py)
whichever runtime then runs them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
from collections.abc import Callable
from typing import Any

import zmq
from docker import DockerClient
from docker.errors import ImageNotFound
from jupyter_client.connect import LocalPortCache
from jupyter_client.manager import KernelManager

from ...docker.client import DaemonUnreachable
from ...docker.nvidia_runtime import detect_runtime
from ...environments.model import Environment
from ...errors import PolicyViolation
from ...gpu_set import GpuSet
from .. import kernel_history
from ..kernel_errors import KernelRefused, KernelStartFailed
from ..kernel_side import START_WARNING_ENV, use_curve
from ..policy.launch_gate import SECRETS_STAY_OUT, check_create_arguments, is_secret_variable
from ..policy.launch_policy import DOCKER_KEYS, EffectiveLaunch
from ..provisioner_base import GpuEnvProvisionerMixin
from ..start_progress import StartProgress
from .gpu_request import plan_gpus
from .kernel_layer import ensure_layer, image_has_ipykernel
from .orphans import private_connection_dir, remove_orphans_once, this_instance
from .readiness import PORT_NAMES
from .request import (
    ContainerRequest,
    allowance_for,
    connection_file_for,
    container_user,
    create_arguments,
)


class ContainerPreparation:
    """The environment, policy, image and gated request of one container kernel."""

    def __init__(self, owner: GpuEnvProvisionerMixin) -> None:
        self.owner = owner
        self.environment: Environment | None = None
        self.launch: EffectiveLaunch | None = None
        # The variables this package adds for the kernel side (given, like the admin's).
        self.kernel_notes: dict[str, str] = {}
        self.image: str | None = None  # the image reference the kernel runs
        self.ports_cached = False
        self.cached_ports: list[int] = []  # taken from jupyter_client's cache, returned at the end
        self.connection_copy: str | None = None  # the container's private copy
        self.curve = False
        self.extra_arguments: list[str] = []

    # -- before the start ------------------------------------------------------------

    async def resolve(
        self,
        progress: StartProgress,
        transport_encryption: str | None,
        extra_arguments: list[str],
        session: str,
    ) -> None:
        """Environment, policy and doctor; then keys, ports and the connection file."""
        owner = self.owner
        env = await owner.resolve_environment()
        progress.environment_name, progress.display_name = env.name, env.display_name
        if env.kind != "docker":
            raise KernelStartFailed(
                f"Environment {env.id!r} is a {env.kind} environment; its kernelspec must use "
                "gpuenv-local-provisioner."
            )
        self.environment = env
        self.launch = owner.apply_policy(env, DOCKER_KEYS)
        owner.check_compatibility(env)
        km = owner.parent
        if km is None:
            raise KernelStartFailed("Docker kernels need a KernelManager as parent.")
        if km.transport != "tcp":
            raise KernelStartFailed("Docker kernels need the tcp transport.")
        self._provision_curve_keys(km, transport_encryption, env)
        if not self.ports_cached:
            # Ports are fixed before the start: the kernel cannot write the ports it
            # picked into the read-only connection file.
            cache = LocalPortCache.instance()
            for name in PORT_NAMES:
                if km.cache_ports or not getattr(km, name):
                    setattr(km, name, cache.find_available_port(km.ip))
            self.ports_cached = True
            self.cached_ports = [int(getattr(km, name)) for name in PORT_NAMES]
        km.write_connection_file(jupyter_session=session)
        self.extra_arguments = list(extra_arguments)

    def _provision_curve_keys(
        self, km: KernelManager, requested: str | None, env: Environment
    ) -> None:
        """CurveZMQ keys in the connection file when this kernel's ipykernel reads them.

        As for local kernels (``use_curve``): the kernel manager's ``transport_encryption``
        decides when set, else the image's ipykernel (>= 7.4, or the kernel layer's). A
        kernelspec's own image was not probed by the catalog: only "required" encrypts it.
        The kernel starts from a private writable copy of the file (request.py).
        """
        _, launch = self.prepared()
        probed_image = not launch.image or launch.image == env.location.get("image")
        encrypt = use_curve(km, requested, env if probed_image else None)
        if encrypt and km.curve_publickey is None:
            km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
        elif not encrypt:
            km.curve_publickey = km.curve_secretkey = None
        self.curve = encrypt

    def prepared(self) -> tuple[Environment, EffectiveLaunch]:
        if self.environment is None or self.launch is None:
            raise KernelStartFailed("The kernel was launched before pre_launch resolved it.")
        return self.environment, self.launch

    def run_as(self, user: str) -> None:
        """The only user the container may run as (the broker's: the Hub user's uid:gid)."""
        _, launch = self.prepared()
        launch.admin["user"] = user
        launch.overrides.pop("user", None)

    def assign_gpus(self, gpus: GpuSet) -> None:
        """Replace the GPUs the policy granted (the broker's exclusive choice)."""
        _, launch = self.prepared()
        launch.gpus = gpus

    def return_ports(self) -> None:
        """Give the kernel's ports back to jupyter_client's cache (the kernel has ended)."""
        cache = LocalPortCache.instance()
        for port in self.cached_ports:
            cache.return_port(port)
        self.cached_ports = []
        self.ports_cached = False

    # -- the image and the request ---------------------------------------------------

    async def docker_and_image(
        self, client_for: Callable[[bool], DockerClient], progress: StartProgress
    ) -> tuple[DockerClient, str, str]:
        """Docker's client (refused when Docker does not answer), after this process's one
        orphan sweep, with the image to run and its python (kernel_image)."""
        try:
            client = await asyncio.to_thread(client_for, True)
        except DaemonUnreachable as err:
            raise KernelStartFailed(err.message) from err
        await asyncio.to_thread(remove_orphans_once, client, self.owner.log)
        image_id, python = await self.kernel_image(client, progress)
        return client, image_id, python

    async def kernel_image(self, client: DockerClient, progress: StartProgress) -> tuple[str, str]:
        """The image to run (a kernel layer when it lacks ipykernel) and its python."""
        env, launch = self.prepared()
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
        image_id = str(image.id)
        known_id = env.location.get("image_id")
        same_image = ref == env.location.get("image") and known_id in (None, image_id)
        python = (env.python_executable if same_image else None) or "python3"
        timeout = self.owner.gpuenv_config.image_build_timeout
        # Without a python version the catalog's probe never ran (Docker was down, it
        # timed out): its ipykernel=False is no fact, so the image is asked here.
        probed = env.python_version is not None
        if same_image and probed and env.ipykernel:
            return image_id, python
        if not (same_image and probed):
            progress.step("image-probe", f"Checking whether {ref} has ipykernel")
            if await asyncio.to_thread(image_has_ipykernel, client, image_id, python, timeout):
                return image_id, python
        layer = await asyncio.to_thread(
            ensure_layer, client, image_id, ref, python, timeout, self.owner.log, progress
        )
        return layer, python

    def container_request(
        self,
        client: DockerClient,
        image_id: str,
        python: str,
        cwd: str,
        server_env: dict[str, str],
        gpus: GpuSet | None = None,
    ) -> ContainerRequest:
        """The container of this kernel; ``gpus`` replaces the policy's device GPUs (Swarm
        assigns its own)."""
        owner = self.owner
        env, launch = self.prepared()
        config = owner.gpuenv_config
        if gpus is not None:
            launch = dataclasses.replace(launch, gpus=gpus)
        # The admin's entry as read at launch, then what the policy let through; never
        # the catalog's copy (its cache file is the user's to write).
        settings = launch.settings()
        # Ours, for the kernel side: how the previous kernel process ended, and the
        # doctor's warning when an incompatible start was allowed.
        kernel_notes = dict(kernel_history.previous_exit_environment(owner.kernel_id))
        if owner.start_warning:
            kernel_notes[START_WARNING_ENV] = owner.start_warning
        if kernel_notes:
            settings["environment"] = {**(settings.get("environment") or {}), **kernel_notes}
        self.kernel_notes = kernel_notes
        gpu_plan = plan_gpus(launch.gpus, detect_runtime(client))
        for note in gpu_plan.notes:
            owner.log.warning("Kernel %s (%s): %s", owner.kernel_id, env.name, note)
        user, _ = container_user(cwd, config.docker_allow_root, settings.get("user"))
        km = owner.parent
        if km is None:
            raise KernelStartFailed("Docker kernels need a KernelManager as parent.")
        original = os.path.realpath(km.connection_file)
        copy = connection_file_for(
            user, original, private_connection_dir, owner.kernel_id or "kernel"
        )
        self.connection_copy = copy
        allowlist = list(config.docker_environment_allowlist)
        secret = [name for name in allowlist if is_secret_variable(name)]
        if secret:
            owner.log.warning(
                "Kernel %s: %s not passed to the container: %s",
                owner.kernel_id,
                ", ".join(secret),
                SECRETS_STAY_OUT,
            )
        conda_env = env.location.get("conda_env")
        image_attrs = client.images.get(image_id).attrs.get("Config") or {}
        return ContainerRequest(
            kernel_id=owner.kernel_id or "",
            environment_id=env.id,
            image=image_id,
            python=python,
            connection_file=copy or original,
            cwd=cwd,
            settings=settings,
            instance=this_instance(),
            hub_user=config.hub_user,
            server_env=dict(os.environ),
            env_allowlist=[name for name in allowlist if name not in secret],
            kernel_env_allowlist=(
                None if config.kernel_env_allowlist is None else list(config.kernel_env_allowlist)
            ),
            image_env=list(image_attrs.get("Env") or []),
            gpu_environment=gpu_plan.environment,
            device_requests=gpu_plan.device_requests,
            allow_root=config.docker_allow_root,
            conda_prefix_in_image=os.path.dirname(os.path.dirname(python)) if conda_env else None,
            session_name=server_env.get("JPY_SESSION_NAME"),
            extra_arguments=self.extra_arguments,
            curve=self.curve,
        )

    def checked_arguments(self, request: ContainerRequest) -> dict[str, Any]:
        """The container's create arguments, behind the last gate: nothing beyond the
        policy passes, whichever runtime then runs them."""
        _, launch = self.prepared()
        args = create_arguments(request)
        try:
            admin_environment = launch.admin.get("environment")
            if not isinstance(admin_environment, dict):
                admin_environment = {}
            given = {**admin_environment, **self.kernel_notes}
            check_create_arguments(args, allowance_for(request, launch.gpus, given))
        except PolicyViolation as err:
            raise KernelRefused(err.message) from err
        return args

    def discard_connection_copy(self) -> None:
        if self.connection_copy:
            pathlib.Path(self.connection_copy).unlink(missing_ok=True)
            self.connection_copy = None
