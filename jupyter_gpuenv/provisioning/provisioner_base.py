"""What the Docker and local-env provisioners share: configuration, environment, policy.

A kernelspec names an ``environment_id``; the environment's image or prefix, GPUs and
mounts come from the admin's configuration through the catalog. Any further keys of the
kernelspec's provisioner config are requests that the admin policy (policy.py) narrows
or refuses.
"""

from __future__ import annotations

from typing import Any

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from ..config import GpuEnv
from ..config_check import checked_config, load_checked_config
from ..environments.catalog import Catalog
from ..environments.model import Environment
from ..errors import EnvironmentNotFound, PolicyViolation
from ..services import Services, shared_services
from .kernel_errors import KernelRefused, KernelStartFailed
from .policy.launch_policy import EffectiveLaunch, enforce_policy


class GpuEnvProvisionerMixin(LoggingConfigurable):
    """Environment and configuration lookup for provisioners started with an env id."""

    environment_id = Unicode(
        "", config=True, help="Catalog id of the environment this kernel runs in."
    )

    requested_config: dict[str, Any]
    # Provided by jupyter_client's KernelProvisionerBase, which every user of this mixin is.
    kernel_spec: Any
    kernel_id: str | None
    _gpuenv_config: GpuEnv | None = None
    _services: Services | None = None
    # The doctor's warning this kernel started with (block_incompatible = False), for
    # GET /gpuenv/api/kernels and the Lab; None when it found no error.
    start_warning: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        # jupyter_client passes these three itself; every other keyword comes from the
        # kernelspec's provisioner config. Of those only environment_id sets a trait: the
        # rest (gpus, mounts, ... and names like "config" or "log" that would otherwise
        # reach traitlets) are requests that the admin policy checks at launch.
        own: dict[str, Any] = {
            k: kwargs.pop(k) for k in ("kernel_id", "kernel_spec", "parent") if k in kwargs
        }
        if "environment_id" in kwargs and isinstance(kwargs["environment_id"], str):
            own["environment_id"] = kwargs.pop("environment_id")
        self.requested_config = dict(kwargs)
        super().__init__(**own)

    def use(self, config: GpuEnv, services: Services) -> None:
        """Run under this configuration and these services instead of the server's (the
        broker's, per Hub user)."""
        self._gpuenv_config = config
        self._services = services

    @property
    def gpuenv_config(self) -> GpuEnv:
        """The server's ``c.GpuEnv`` when there is one, else the same config files."""
        if self._gpuenv_config is None:
            self._gpuenv_config = gpuenv_config_for(self)
        return self._gpuenv_config

    def apply_policy(self, env: Environment, supported: frozenset[str]) -> EffectiveLaunch:
        """What this launch may use; a refusal becomes a 403 the user can read.

        ``supported``: the kernelspec keys the provisioner uses; others are refused.
        """
        requested = dict(self.requested_config, environment_id=self.environment_id)
        name = getattr(self.kernel_spec, "name", None) or getattr(self.parent, "kernel_name", None)
        try:
            launch = enforce_policy(
                self.gpuenv_config, env, requested, kernel_name=name, supported=supported
            )
        except PolicyViolation as err:
            raise KernelRefused(err.message) from err
        for note in launch.notes:
            self.log.info("Kernel %s: %s", self.kernel_id, note)
        return launch

    def check_compatibility(self, env: Environment) -> str | None:
        """Refuse a start the doctor judged an error for this host (``block_incompatible``).

        With ``block_incompatible = False`` the start goes on and the returned warning is
        what the kernel shows first; None when the doctor found no error.
        """
        self.start_warning = None
        compatibility = env.compatibility or {}
        if compatibility.get("verdict") != "error":
            return None
        errors = [f for f in compatibility.get("findings") or [] if f.get("severity") == "error"]
        described = "; ".join(
            str(f.get("message")) + (f" (fix: {f['fix']})" if f.get("fix") else "") for f in errors
        )
        message = f"{env.display_name} will not work on this host: {described}"
        if self.gpuenv_config.block_incompatible:
            raise KernelRefused(
                f"{message}. The start is refused (c.GpuEnv.block_incompatible); "
                "`jupyter gpuenv doctor` shows the details."
            )
        self.log.warning("Kernel %s starts although %s", self.kernel_id, message)
        self.start_warning = message
        return message

    @property
    def services(self) -> Services:
        """The server's services (through its kernelspec manager) or this process's."""
        ksm = getattr(self.parent, "kernel_spec_manager", None)
        services = getattr(ksm, "services", None)
        if isinstance(services, Services):
            return services
        # Looked up once: the lookup serialises the whole configuration, and poll() asks
        # for the Docker client many times a second while a kernel stops.
        if self._services is None:
            self._services = shared_services(self.gpuenv_config, self.log)
        return self._services

    def catalog(self) -> Catalog:
        return self.services.catalog

    async def resolve_environment(self) -> Environment:
        """The catalog entry for ``environment_id``; probing happens only if unknown."""
        if not self.environment_id:
            raise KernelStartFailed(
                "This kernelspec names a gpuenv provisioner without "
                "metadata.kernel_provisioner.config.environment_id."
            )
        catalog = self.catalog()
        for env in catalog.cached_environments():
            if env.id == self.environment_id:
                return env
        try:
            return await catalog.get(self.environment_id)
        except EnvironmentNotFound as err:
            raise KernelStartFailed(
                f"Environment {self.environment_id!r} is not in the catalog: it was removed "
                "or is no longer configured. Pick another kernel, or reinstall the "
                "kernelspecs with `jupyter gpuenv kernelspecs install`."
            ) from err


def gpuenv_config_for(configurable: LoggingConfigurable) -> GpuEnv:
    """``c.GpuEnv`` from the caller's config (a server), else from the config files.

    Inside jupyter_server the kernel manager's config is the server's, so the admin's
    settings arrive through the parent chain; plain jupyter_client (nbclient, papermill,
    console) has no such config and reads the files ``jupyter server`` would read.
    """
    if configurable.config._has_section("GpuEnv"):
        return checked_config(parent=configurable)
    return load_checked_config(parent=configurable)
