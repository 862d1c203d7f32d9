"""The broker's kernels: started for one Hub user each, found again from Docker's labels.

A start runs the same Docker provisioner a single-user server runs, inside the broker,
with the user's ``c.GpuEnv`` (broker_rules.user_config), the user's uid:gid as the
admin's ``user``, the notebook folder checked against the user's roots, the quota and an
exclusive GPU choice; the provisioner's policy and last gate then apply unchanged. Once
the kernel answers, Docker is the record: the container carries the user's name and the
kernel id, and every later call (status, signal, logs, stop) checks that label against
the caller. The broker's instance id is stable across its restarts, so its containers
are its own again after one (and never swept as orphans).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import APIError, NotFound
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

from ..config import GpuEnv
from ..docker import labels
from ..docker.runs import explanation
from ..errors import BadRequest, GpuEnvError, PolicyViolation
from ..gpu_set import GpuSet
from ..provisioning import broker_rules, orphans, swarm, swarm_kernel
from ..provisioning.docker import DockerProvisioner
from ..provisioning.readiness import log_tail
from ..provisioning.swarm import SwarmPlacement
from ..services import Services

_KERNEL_ID = re.compile(r"[0-9a-fA-F-]{8,64}")
SIGNALS = frozenset({"SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"})
START_KEYS = frozenset(
    {
        "kernel_id",
        "environment_id",
        "key",
        "signature_scheme",
        "cwd",
        "config",
        "session_name",
        "env",
        "transport_encryption",
    }
)


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


class KernelBroker:
    """Starts, finds, signals and stops the kernels of Hub users on this engine."""

    def __init__(
        self,
        config: GpuEnv,
        services: Services,
        rules: dict[str, Any],
        kernel_ip: str = "127.0.0.1",
        log: logging.Logger | None = None,
        host_gpus: Any = None,
    ) -> None:
        self.config = config
        self.services = services
        self.rules = rules  # {"default": {...}, "groups": {...}, "users": {...}, "user_ids": {...}}
        self.kernel_ip = kernel_ip
        self.log = log or logging.getLogger(__name__)
        # () -> list of the host's GPU UUIDs, or None when NVML cannot tell.
        self.host_gpus = host_gpus or (lambda: None)
        self.kernels: dict[str, BrokeredKernel] = {}
        self._starting: dict[str, str] = {}  # kernel id -> user, while a start runs
        self._pending_gpus: dict[str, tuple[str, list[str]]] = {}  # kernel id -> (user, GPUs)

    # -- who ------------------------------------------------------------------------

    def user(self, name: str, groups: list[str]) -> broker_rules.HubUser:
        return broker_rules.hub_user(name, groups, self.rules.get("user_ids") or {})

    def rules_of(self, user: broker_rules.HubUser) -> broker_rules.UserRules:
        return broker_rules.rules_for(
            user,
            self.rules.get("default") or {},
            self.rules.get("groups") or {},
            self.rules.get("users") or {},
        )

    def environments(self, user: broker_rules.HubUser) -> list[dict[str, Any]]:
        """The catalog's Docker environments this user may start."""
        rules = self.rules_of(user)
        found = self.services.catalog.list_environments_sync()
        return [
            env.to_json()
            for env in found
            if env.kind == "docker"
            and env.name in self.config.docker_images
            and rules.allows_environment(env.name)
        ]

    def of(self, user: str, kernel_id: str) -> BrokeredKernel:
        kernel = self.kernels.get(kernel_id)
        if kernel is None or kernel.user != user:
            raise NotYours(f"You have no kernel {kernel_id!r} here.")
        return kernel

    def kernels_of(self, user: str) -> list[BrokeredKernel]:
        return [k for k in self.kernels.values() if k.user == user]

    # -- start ----------------------------------------------------------------------

    async def start(self, user: broker_rules.HubUser, body: dict[str, Any]) -> dict[str, Any]:
        """Start a kernel for ``user`` from a request body; its connection info back."""
        kernel_id, env_id, key, scheme = _start_fields(body)
        if kernel_id in self._starting or kernel_id in self.kernels:
            raise Conflict(f"Kernel id {kernel_id} is already in use.")
        self._starting[kernel_id] = user.name
        try:
            return await self._start(user, body, kernel_id, env_id, key, scheme)
        finally:
            self._starting.pop(kernel_id, None)
            self._pending_gpus.pop(kernel_id, None)

    async def _start(
        self,
        user: broker_rules.HubUser,
        body: dict[str, Any],
        kernel_id: str,
        env_id: str,
        key: str,
        scheme: str,
    ) -> dict[str, Any]:
        rules = self.rules_of(user)
        env = await self._allowed_environment(rules, env_id)
        cwd = broker_rules.notebook_folder(body.get("cwd"), rules)
        running = len(self.kernels_of(user.name)) + sum(
            1 for other in self._starting.values() if other == user.name
        ) - 1
        broker_rules.check_quota(rules, running, 0, 0)
        requested = body.get("config") or {}
        if not isinstance(requested, dict):
            raise BadRequest("config must be an object (the kernelspec's provisioner config).")
        km = self._kernel_manager(kernel_id, key, scheme)
        provisioner = DockerProvisioner(
            kernel_id=kernel_id,
            kernel_spec=KernelSpec(argv=[], display_name=env.display_name, language="python"),
            parent=km,
            **{k: v for k, v in requested.items() if k != "environment_id"},
            environment_id=env_id,
        )
        provisioner._gpuenv_config = broker_rules.user_config(self.config, user, rules)
        provisioner._services = self.services
        session = str(body.get("session_name") or "")[:200]
        encryption = body.get("transport_encryption")
        if encryption not in (None, "required", "disabled", "auto"):
            raise BadRequest("transport_encryption must be null, 'auto', 'required' or 'disabled'.")
        kwargs = await provisioner.pre_launch(
            cwd=cwd, env={"JPY_SESSION_NAME": session}, transport_encryption=encryption
        )
        try:
            launch = provisioner._launch
            assert launch is not None
            # The only user its containers may run as: the Hub user's account.
            launch.admin["user"] = f"{user.uid}:{user.gid}"
            launch.overrides.pop("user", None)
            launch.gpus = self._choose_gpus(user, rules, launch.gpus)
            self._pending_gpus[kernel_id] = (user.name, list(launch.gpus.ids or ()))
            await provisioner.launch_kernel(**kwargs)
        except BaseException:
            await provisioner.cleanup()
            km.cleanup_connection_file()
            raise
        # Kernels outlive a broker restart: nothing of them is removed at its exit.
        service = provisioner._swarm
        if service is not None:
            swarm_kernel.forget(service)
        elif provisioner.container_id is not None:
            orphans.untrack(provisioner.container_id)
        kernel = BrokeredKernel(
            kernel_id=kernel_id,
            user=user.name,
            environment_id=env_id,
            container_id=provisioner.container_id or "",
            container_name=service.service_name if service else provisioner.container_name or "",
            image=provisioner.image or "",
            gpus=list(service.gpus if service else launch.gpus.ids or ()),
            connection_copy=provisioner._connection_copy,
            service=service,
        )
        self.kernels[kernel_id] = kernel
        km.cleanup_connection_file()  # the container has its own copy
        connection: dict[str, Any] = dict(provisioner.connection_info)
        for name in ("key", "curve_publickey", "curve_secretkey"):
            value = connection.get(name)
            if isinstance(value, bytes):
                connection[name] = value.decode()
        self.log.info(
            "Kernel %s of %s: container %s (%s), GPUs %s",
            kernel_id,
            user.name,
            kernel.container_name,
            env.name,
            ",".join(kernel.gpus) or "none",
        )
        return {
            "kernel": kernel.to_json({"Running": True}),
            "connection": connection,
            "start_warning": provisioner.start_warning,
        }

    async def _allowed_environment(self, rules: broker_rules.UserRules, env_id: str) -> Any:
        for env in await self.services.catalog.list_environments():
            if env.id != env_id:
                continue
            if env.kind != "docker" or env.name not in self.config.docker_images:
                break
            if not rules.allows_environment(env.name):
                raise PolicyViolation(
                    f"Environment {env.display_name!r} is not among the environments you may "
                    f"use ({', '.join(sorted(rules.environments or ())) or 'none'})."
                )
            return env
        raise PolicyViolation(
            f"Environment {env_id!r} is not one the administrator offers through the broker."
        )

    def _kernel_manager(self, kernel_id: str, key: str, scheme: str) -> KernelManager:
        """A manager holding the connection info only (it never starts a process)."""
        folder = Path(orphans.private_connection_dir())
        km = KernelManager(
            kernel_name="gpuenv-broker",
            ip=self.kernel_ip,
            transport="tcp",
            connection_file=str(folder / f"kernel-{kernel_id}.json"),
        )
        km.session.key = key.encode()
        km.session.signature_scheme = scheme
        return km

    def _choose_gpus(
        self, user: broker_rules.HubUser, rules: broker_rules.UserRules, gpus: GpuSet
    ) -> GpuSet:
        """The quota, then GPUs no other brokered kernel holds (when the host's are known)."""
        # Swarm hands out the nodes' GPUs itself; this host's are not theirs.
        host = None if self.config.scheduler == "swarm" else self.host_gpus()
        wanted = broker_rules.gpu_count(gpus, len(host) if host is not None else None)
        pending = list(self._pending_gpus.values())
        in_use = sum(len(k.gpus) for k in self.kernels_of(user.name))
        in_use += sum(len(ids) for owner, ids in pending if owner == user.name)
        broker_rules.check_quota(rules, 0, in_use, wanted)
        if not wanted or host is None:
            return gpus
        taken = [gpu for k in self.kernels.values() for gpu in k.gpus]
        taken += [gpu for _, ids in pending for gpu in ids]
        if gpus.ids is not None:
            asked = [_host_uuid(gpu, host) for gpu in gpus.ids]
            busy = [gpu for gpu in asked if gpu in taken]
            if busy:
                raise Conflict(f"GPU {', '.join(busy)} is in use by another kernel.")
            return GpuSet.parse(asked)
        chosen = broker_rules.free_gpus(host, taken, wanted)
        if chosen is None:
            raise Conflict(
                f"No {wanted} free GPU(s): {len(set(taken))} of the host's {len(host)} are in "
                "use by other kernels. Try again when one is shut down."
            )
        return GpuSet.parse(chosen)

    # -- life -----------------------------------------------------------------------

    async def state(self, kernel: BrokeredKernel) -> dict[str, Any]:
        client = self.services.docker()
        if kernel.service is not None:
            code = await asyncio.to_thread(swarm.task_exit_code, client, kernel.service.service_id)
            return {"Running": code is None, "ExitCode": code}
        try:
            attrs = await asyncio.to_thread(client.api.inspect_container, kernel.container_id)
        except NotFound:
            return {"Running": False, "ExitCode": -1}
        return dict(attrs.get("State") or {})

    async def signal(self, kernel: BrokeredKernel, name: str) -> None:
        if name not in SIGNALS:
            raise BadRequest(f"signal must be one of {', '.join(sorted(SIGNALS))}, not {name!r}")
        client = self.services.docker()
        if kernel.service is not None:
            # A signal cannot cross to another node: the server interrupts a swarm kernel
            # on its control channel; TERM and KILL end its service.
            if name not in ("SIGTERM", "SIGKILL"):
                raise Conflict(
                    f"{name} cannot reach a kernel on another node; interrupt it with an "
                    "interrupt_request on its control channel."
                )
            await asyncio.to_thread(swarm.remove_service, client, kernel.service)
            return
        try:
            await asyncio.to_thread(client.api.kill, kernel.container_id, name)
        except NotFound:
            pass
        except APIError as err:
            if err.status_code != 409:  # not running any more
                raise Conflict(f"The kernel could not be signalled: {explanation(err)}") from err

    async def logs(self, kernel: BrokeredKernel) -> str:
        client = self.services.docker()
        if kernel.service is not None:
            return await asyncio.to_thread(
                swarm.service_log_tail, client, kernel.service.service_id
            )
        try:
            container = await asyncio.to_thread(client.containers.get, kernel.container_id)
        except NotFound:
            return ""
        return await asyncio.to_thread(log_tail, container)

    async def stop(self, kernel: BrokeredKernel) -> None:
        """Remove the container (and the connection file copy) and forget the kernel."""
        client = self.services.docker()
        if kernel.service is not None:
            await asyncio.to_thread(swarm.remove_service, client, kernel.service)
        else:
            try:
                await asyncio.to_thread(
                    client.api.remove_container, kernel.container_id, force=True
                )
            except NotFound:
                pass
        if kernel.connection_copy:
            Path(kernel.connection_copy).unlink(missing_ok=True)
        self.kernels.pop(kernel.kernel_id, None)
        self.log.info("Kernel %s of %s stopped", kernel.kernel_id, kernel.user)

    async def stop_all_of(self, user: str) -> int:
        kernels = self.kernels_of(user)
        for kernel in kernels:
            await self.stop(kernel)
        return len(kernels)

    def users(self) -> set[str]:
        return {k.user for k in self.kernels.values()}

    # -- restart --------------------------------------------------------------------

    async def reattach(self) -> int:
        """Take back the kernel containers this broker started before a restart."""
        client = self.services.docker()
        owned = [f"{labels.ROLE}=kernel", f"{labels.SERVER_ID}={orphans.this_instance().id}"]
        if self.config.scheduler == "swarm":
            await asyncio.to_thread(self._reattach_services, client, owned)
            containers = []
        else:
            containers = await asyncio.to_thread(
                client.containers.list, all=True, filters={"label": owned}, ignore_removed=True
            )
        for container in containers:
            found = container.labels or {}
            kernel_id, user = found.get(labels.KERNEL_ID), found.get(labels.USER)
            if not kernel_id or not user:
                continue
            if container.status not in ("running", "created"):
                try:  # the kernel ended while the broker was away
                    await asyncio.to_thread(container.remove, force=True)
                except APIError as err:
                    self.log.debug("Container %s not removed: %s", container.name, err)
                continue
            self.kernels[kernel_id] = BrokeredKernel(
                kernel_id=kernel_id,
                user=user,
                environment_id=found.get(labels.ENVIRONMENT_ID, ""),
                container_id=str(container.id),
                container_name=str(container.name),
                image=str((container.attrs.get("Config") or {}).get("Image") or ""),
                gpus=_device_ids(container.attrs),
            )
        if self.kernels:
            self.log.info("Re-attached %d kernel(s): %s", len(self.kernels), sorted(self.kernels))
        return len(self.kernels)


    def _reattach_services(self, client: Any, owned: list[str]) -> None:
        """Swarm mode: the kernel services this broker started before its restart."""
        try:
            services = client.api.services(filters={"label": owned})
        except APIError as err:
            self.log.warning("Kernel services not listed: %s", explanation(err))
            return
        for item in services:
            spec = item.get("Spec") or {}
            found = spec.get("Labels") or {}
            kernel_id, user = found.get(labels.KERNEL_ID), found.get(labels.USER)
            if not kernel_id or not user:
                continue
            secrets = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get(
                "Secrets"
            ) or [{}]
            service = SwarmPlacement(
                service_id=str(item["ID"]),
                service_name=str(spec.get("Name") or ""),
                secret_id=str(secrets[0].get("SecretID") or ""),
            )
            task = swarm.latest_task(client, service.service_id)
            if task is not None and task.get("NodeID"):
                service.node_id = str(task["NodeID"])
                service.node_name, service.node_addr = swarm.node_address(client, service.node_id)
                service.gpus = swarm.assigned_gpus(task, self.config.swarm_gpu_resource)
            if swarm.task_exit_code(client, service.service_id) is not None:
                swarm.remove_service(client, service)
                continue
            self.kernels[kernel_id] = BrokeredKernel(
                kernel_id=kernel_id,
                user=user,
                environment_id=found.get(labels.ENVIRONMENT_ID, ""),
                container_id="",
                container_name=service.service_name,
                image=str(
                    ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image")
                    or ""
                ),
                gpus=service.gpus,
                service=service,
            )


def _start_fields(body: dict[str, Any]) -> tuple[str, str, str, str]:
    unknown = sorted(str(k) for k in body if k not in START_KEYS)
    if unknown:
        raise BadRequest(
            f"Unknown fields {', '.join(unknown)}; a start takes {', '.join(sorted(START_KEYS))}."
        )
    kernel_id, env_id = body.get("kernel_id"), body.get("environment_id")
    key, scheme = body.get("key"), body.get("signature_scheme") or "hmac-sha256"
    if not isinstance(kernel_id, str) or not _KERNEL_ID.fullmatch(kernel_id):
        raise BadRequest(f"kernel_id must be a kernel's UUID, not {kernel_id!r}.")
    if not isinstance(env_id, str) or not env_id:
        raise BadRequest("environment_id is required.")
    if not isinstance(key, str) or not 16 <= len(key) <= 512:
        raise BadRequest("key must be the kernel's HMAC key (16 to 512 characters).")
    if scheme != "hmac-sha256":
        raise BadRequest(f"signature_scheme must be hmac-sha256, not {scheme!r}.")
    env = body.get("env")
    if env is not None and not isinstance(env, dict):
        raise BadRequest("env must be an object.")
    return kernel_id.lower(), env_id, key, scheme


def _host_uuid(gpu: str, host: list[str]) -> str:
    """An index as the host's UUID at that position; a UUID as it is."""
    if gpu.isdigit() and int(gpu) < len(host):
        return host[int(gpu)]
    return gpu


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


