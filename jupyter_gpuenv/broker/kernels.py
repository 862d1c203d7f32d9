"""The broker's kernels: each started for one Hub user, under that user's rules.

A start runs the same Docker provisioner a single-user server runs, inside the broker,
with the user's ``c.GpuEnv`` (broker_rules.user_config), the user's uid:gid as the
admin's ``user``, the notebook folder checked against the user's roots, the quota and an
exclusive GPU choice; the provisioner's policy and last gate then apply unchanged. Every
later call (status, signal, logs, stop) names a kernel id and finds it only among the
caller's own (kernel_record.py holds the record and the engine's side of those calls).
The broker's instance id is stable across its restarts, so its containers are its own
again after one (and never swept as orphans).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

from ..config import GpuEnv
from ..environments.model import Environment
from ..errors import BadRequest, PolicyViolation
from ..gpu_set import GpuSet
from ..provisioning import kernel_history, start_progress
from ..provisioning.container import orphans
from ..provisioning.container.provisioner import DockerProvisioner
from ..provisioning.container.runtime import RuntimeContext
from ..provisioning.container.runtimes import RUNTIMES
from ..provisioning.kernel_side import curve_capable
from ..services import Services
from . import kernel_record
from . import rules as broker_rules
from .encryption import curve_problem, handed_out
from .gpu_choice import HostGpus
from .kernel_record import BrokeredKernel, Conflict, NotYours

_KERNEL_ID = re.compile(r"[0-9a-fA-F-]{8,64}")
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
        "kernel_name",
    }
)


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
        require_encryption: bool = True,
    ) -> None:
        self.config = config
        self.services = services
        self.rules = rules  # {"default": {...}, "groups": {...}, "users": {...}, "user_ids": {...}}
        self.kernel_ip = kernel_ip
        self.require_encryption = require_encryption
        self.log = log or logging.getLogger(__name__)
        # () -> the host's GPUs (HostGpus, or a list of whole GPUs' UUIDs), or None when
        # NVML cannot tell.
        self.host_gpus = host_gpus or (lambda: None)
        self.kernels: dict[str, BrokeredKernel] = {}
        self._starting: dict[str, str] = {}  # kernel id -> user, while a start runs
        self._pending_gpus: dict[str, tuple[str, list[str]]] = {}  # kernel id -> (user, GPUs)

    # -- who ------------------------------------------------------------------------

    def user(self, name: str, groups: list[str]) -> broker_rules.HubUser:
        return broker_rules.hub_user(
            name, groups, self.rules.get("user_ids") or {}, self.rules.get("accounts")
        )

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
            if self._offered(env) and rules.allows_environment(env.name)
        ]

    def _offered(self, env: Environment) -> bool:
        """Whether the admin's broker catalog (its docker_images) holds ``env``."""
        return env.kind == "docker" and env.name in self.config.docker_images

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
        # Counted and reserved with no await in between: starts sent together are
        # admitted first come, first served, never beyond the quota.
        rules = self.rules_of(user)
        running = len(self.kernels_of(user.name)) + sum(
            1 for other in self._starting.values() if other == user.name
        )
        broker_rules.check_quota(rules, running, 0, 0)
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
        cwd = broker_rules.notebook_folder(body.get("cwd"), rules, user)
        encryption = self._encryption(body.get("transport_encryption"), env)
        requested = provisioner_config(body.get("config"))
        km = self._kernel_manager(kernel_id, key, scheme)
        spec = KernelSpec(argv=[], display_name=env.display_name, language="python")
        spec.name = _kernel_name(body.get("kernel_name"))
        provisioner = DockerProvisioner(
            kernel_id=kernel_id,
            kernel_spec=spec,
            parent=km,
            **requested,
            environment_id=env_id,
        )
        provisioner.use(broker_rules.user_config(self.config, user, rules), self.services)
        session = str(body.get("session_name") or "")[:200]
        try:
            kwargs = await provisioner.pre_launch(
                cwd=cwd, env={"JPY_SESSION_NAME": session}, transport_encryption=encryption
            )
            preparation = provisioner.preparation
            _, launch = preparation.prepared()
            # The only user its containers may run as: the Hub user's account.
            preparation.run_as(f"{user.uid}:{user.gid}")
            preparation.assign_gpus(self._choose_gpus(user, rules, launch.gpus))
            self._pending_gpus[kernel_id] = (user.name, list(launch.gpus.ids or ()))
            await provisioner.launch_kernel(**kwargs)
            connection = handed_out(provisioner.connection_info)
            unencrypted = curve_problem(connection) if self.require_encryption else None
            if unencrypted is not None:
                # Fail closed: checked on what the user's server would get, whatever made it.
                raise PolicyViolation(
                    f"The kernel would not be encrypted ({unencrypted}), and the "
                    "administrator requires encrypted kernels "
                    "(c.GpuEnvBroker.require_encryption); it was not started."
                )
        except BaseException as err:
            _start_failed(kernel_id, err)
            await provisioner.cleanup()
            km.cleanup_connection_file()
            raise
        started = provisioner.runtime
        assert started is not None
        kernel_history.forget(kernel_id)  # the user's server keeps the kernel's history
        # The broker's own record of the kernel: the runtime re-made from its record with
        # the broker's context, which holds no kernel manager and outlives nothing.
        started.keep_after_exit()
        record = started.record()
        runtime = RUNTIMES[record["kind"]].from_record(record, self._context(kernel_id))
        placement = runtime.placement()
        kernel = BrokeredKernel(
            kernel_id=kernel_id,
            user=user.name,
            environment_id=env_id,
            runtime=runtime,
            gpus=list(placement["gpus"] if placement else launch.gpus.ids or ()),
            ports=list(preparation.cached_ports),
        )
        self.kernels[kernel_id] = kernel
        km.cleanup_connection_file()  # the container has its own copy
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

    def _encryption(self, requested: object, env: Environment) -> str | None:
        """The kernel's transport_encryption: "required" when the admin requires it."""
        if requested not in (None, "required", "disabled", "auto"):
            raise BadRequest("transport_encryption must be null, 'auto', 'required' or 'disabled'.")
        if not self.require_encryption:
            return requested if isinstance(requested, str) else None
        if requested == "disabled":
            raise PolicyViolation(
                "Unencrypted kernels are not allowed here (c.GpuEnvBroker.require_encryption): "
                "other accounts on the host could read their messages."
            )
        if not curve_capable(env):
            raise PolicyViolation(
                f"{env.display_name} cannot encrypt its kernel's messages (CurveZMQ needs "
                "ipykernel >= 7.4 in the image, or Python >= 3.11 for the kernel layer), and "
                "the administrator requires encrypted kernels (c.GpuEnvBroker.require_encryption)."
            )
        return "required"

    async def _allowed_environment(
        self, rules: broker_rules.UserRules, env_id: str
    ) -> Environment:
        for env in await self.services.catalog.list_environments():
            if env.id != env_id:
                continue
            if not self._offered(env):
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
        host = None if self.config.scheduler == "swarm" else self._host_gpus()
        wanted = broker_rules.gpu_count(gpus, len(host.gpus) if host is not None else None)
        pending = list(self._pending_gpus.values())
        in_use = sum(len(k.gpus) for k in self.kernels_of(user.name))
        in_use += sum(len(ids) for owner, ids in pending if owner == user.name)
        broker_rules.check_quota(rules, 0, in_use, wanted)
        if not wanted or host is None:
            return gpus
        taken = [gpu for k in self.kernels.values() for gpu in k.gpus]
        taken += [gpu for _, ids in pending for gpu in ids]
        if gpus.ids is not None:
            named = {host.resolve(str(g)): str(g) for g in gpus.ids}
            busy = host.busy(named, taken)
            if busy:
                raise Conflict(
                    f"GPU {', '.join(named[b] for b in busy)} is in use by another kernel "
                    "(that device, the GPU it is part of, or a MIG device of it)."
                )
            return GpuSet.parse(list(named))
        chosen = host.free(taken, wanted)
        if chosen is None:
            held = {host.gpu_of(gpu) for gpu in taken}
            raise Conflict(
                f"No {wanted} free GPU(s): {len(held)} of the host's {len(host.gpus)} are in "
                "use by other kernels (whole, or a MIG device of them). Try again when one "
                "is shut down."
            )
        return GpuSet.parse(chosen)

    def _host_gpus(self) -> HostGpus | None:
        """The host's GPUs and MIG devices now (None: NVML cannot tell)."""
        found = self.host_gpus()
        if found is None or isinstance(found, HostGpus):
            return found
        return HostGpus.whole(str(uuid) for uuid in found)

    # -- life -----------------------------------------------------------------------

    def _context(self, kernel_id: str) -> RuntimeContext:
        """Where the broker's kernels run: no kernel manager here, and they outlive the
        broker (nothing removed at its exit, no kernel history kept)."""
        return RuntimeContext(
            kernel_id=kernel_id,
            log=self.log,
            docker=self.services.docker,
            docker_host=self.config.docker_host or None,
            owned=False,
        )

    async def state(self, kernel: BrokeredKernel) -> dict[str, Any]:
        return await kernel_record.kernel_state(kernel)

    async def signal(self, kernel: BrokeredKernel, name: str) -> None:
        await kernel_record.deliver_signal(kernel, name)

    async def logs(self, kernel: BrokeredKernel) -> str:
        return await kernel.runtime.logs()

    async def stop(self, kernel: BrokeredKernel) -> None:
        """Remove the container (and the connection file copy) and forget the kernel."""
        await kernel_record.remove(kernel)
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
        """Take back the kernels this broker (same instance id) started before a restart."""
        found = await asyncio.to_thread(
            kernel_record.owned_kernels,
            self.services.docker(),
            orphans.this_instance().id,
            self.config.scheduler == "swarm",
            self.config.swarm_gpu_resource,
            self._context,
            self.log,
        )
        for kernel in found:
            self.kernels[kernel.kernel_id] = kernel
        if self.kernels:
            self.log.info("Re-attached %d kernel(s): %s", len(self.kernels), sorted(self.kernels))
        return len(found)


# Keywords the provisioner takes from jupyter_client, never from a kernelspec's config.
PROVISIONER_OWN = frozenset({"kernel_id", "kernel_spec", "parent"})


def provisioner_config(config: object) -> dict[str, Any]:
    """A start's ``config`` (the user's kernelspec provisioner config) as the provisioner's
    keywords: an object, without the environment id (the body names it) and without the
    names jupyter_client passes itself."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise BadRequest("config must be an object (the kernelspec's provisioner config).")
    own = sorted(str(k) for k in config if k in PROVISIONER_OWN)
    if own:
        raise BadRequest(f"config may not set {', '.join(own)}: the broker sets it.")
    return {str(k): v for k, v in config.items() if k != "environment_id"}


def _kernel_name(value: object) -> str:
    """The user's kernelspec name, for messages only (printable, at most 100 characters)."""
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text if c.isprintable())[:100]


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


def _start_failed(kernel_id: str, err: BaseException) -> None:
    """Close the start's progress record as failed: a refusal between the provisioner's
    steps (quota, GPUs in use) or after them (encryption) leaves it neither "starting"
    nor "ready"."""
    reason = start_progress.reason_of(err)
    for progress in start_progress.starts(kernel_id=kernel_id):
        if progress.state == "starting":
            progress.fail(reason)
        else:
            progress.refuse(reason)
