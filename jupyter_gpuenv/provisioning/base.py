"""What the Docker and local-env provisioners share.

A kernelspec names an ``environment_id``; the environment's image or prefix, GPUs and
mounts come from the admin's configuration through the catalog. Any further keys of the
kernelspec's provisioner config are requests that the admin policy (policy.py) narrows
or refuses. This module finds that configuration and environment, applies the policy,
builds the ipykernel command line and the variables every kernel gets
(``JUPYTER_GPUENV_*``, the kernel-side package on ``PYTHONPATH``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_runtime_dir
from tornado.web import HTTPError
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from ..config import GpuEnv, load_gpuenv_config
from ..environments.model import Environment
from ..errors import EnvironmentNotFound, KernelStartError, PolicyViolation
from .policy import EffectiveLaunch, enforce_policy

# The magic is loaded through extra_extensions so the user's own ``extensions`` config
# stays intact (a command-line ``extensions=`` would replace it).
EXTENSION_ARG = "--IPKernelApp.extra_extensions=jupyter_gpuenv"
KERNEL_SIDE_IN_CONTAINER = "/opt/jupyter-gpuenv"

_catalogs: dict[str, Any] = {}
_catalogs_lock = threading.Lock()


class KernelStartFailed(KernelStartError, HTTPError):
    """A start failure whose message reaches the user.

    jupyter_server answers any exception that is not a tornado ``HTTPError`` with
    "Unhandled error", hiding the reason; being both keeps our error type and shows the
    message in the REST reply and the Lab dialog.
    """

    def __init__(self, message: str) -> None:
        KernelStartError.__init__(self, message)
        # tornado >= 6.5 makes log_message read-only: it must come through __init__.
        HTTPError.__init__(self, 500, message, reason="Kernel start failed")

    def __str__(self) -> str:
        return self.message


class KernelRefused(PolicyViolation, HTTPError):
    """A policy refusal (403) whose message reaches the user, like KernelStartFailed."""

    def __init__(self, message: str) -> None:
        PolicyViolation.__init__(self, message)
        HTTPError.__init__(self, 403, message, reason="Kernel refused by policy")

    def __str__(self) -> str:
        return self.message


class GpuEnvProvisionerMixin(LoggingConfigurable):
    """Environment and configuration lookup for provisioners started with an env id."""

    environment_id = Unicode(
        "", config=True, help="Catalog id of the environment this kernel runs in."
    )

    requested_config: dict[str, Any]
    _gpuenv_config: GpuEnv | None = None

    def __init__(self, **kwargs: Any) -> None:
        known = set(self.class_trait_names())
        # Other keys of the kernelspec's provisioner config are requests (gpus, mounts,
        # ...) that the admin policy checks at launch.
        self.requested_config = {k: kwargs.pop(k) for k in list(kwargs) if k not in known}
        super().__init__(**kwargs)

    @property
    def gpuenv_config(self) -> GpuEnv:
        """The server's ``c.GpuEnv`` when there is one, else the same config files."""
        if self._gpuenv_config is None:
            self._gpuenv_config = gpuenv_config_for(self)
        return self._gpuenv_config

    def apply_policy(self, env: Environment) -> EffectiveLaunch:
        """What this launch may use; a refusal becomes a 403 the user can read."""
        requested = dict(self.requested_config, environment_id=self.environment_id)
        name = getattr(self.kernel_spec, "name", None) or getattr(self.parent, "kernel_name", None)
        try:
            launch = enforce_policy(self.gpuenv_config, env, requested, kernel_name=name)
        except PolicyViolation as err:
            raise KernelRefused(err.message) from err
        for note in launch.notes:
            self.log.info("Kernel %s: %s", self.kernel_id, note)
        return launch

    def catalog(self) -> Any:
        """The server's catalog (through its kernelspec manager) or a per-process one."""
        ksm = getattr(self.parent, "kernel_spec_manager", None)
        catalog = getattr(ksm, "catalog", None)
        if catalog is not None:
            return catalog
        return shared_catalog(self.gpuenv_config, self.log)

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
        return GpuEnv(parent=configurable, log=configurable.log)
    return load_gpuenv_config(parent=configurable)


def shared_catalog(config: GpuEnv, log: Any = None) -> Any:
    """One catalog per distinct configuration in this process (plain jupyter_client use)."""
    from ..environments.catalog import Catalog

    key = _config_key(config)
    with _catalogs_lock:
        catalog = _catalogs.get(key)
        if catalog is None:
            catalog = _catalogs[key] = Catalog(config, log=log)
        return catalog


def _config_key(config: GpuEnv) -> str:
    names = sorted(config.class_trait_names(config=True))
    values = {name: getattr(config, name) for name in names}
    return json.dumps(values, sort_keys=True, default=str)


def ipykernel_argv(python: str, connection_file: str, extra: list[str] | None = None) -> list[str]:
    """The command that starts ipykernel with the ``%gpuinfo`` extension preloaded."""
    return [python, "-m", "ipykernel_launcher", "-f", connection_file, EXTENSION_ARG] + list(
        extra or []
    )


def kernel_side_env(
    environment_id: str, kernel_id: str, kernel_side: str, pythonpath: str | None
) -> dict[str, str]:
    """Variables every gpuenv kernel sees; the kernel-side folder goes first on PYTHONPATH."""
    parts = [kernel_side] + [p for p in (pythonpath or "").split(os.pathsep) if p]
    return {
        "JUPYTER_GPUENV_ENVIRONMENT_ID": environment_id,
        "JUPYTER_GPUENV_KERNEL_ID": kernel_id,
        "JUPYTER_GPUENV_KERNEL_SIDE": kernel_side,
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(parts)),
    }


def kernel_side_sources() -> tuple[Path, Path | None]:
    """The installed ``jupyter_gpuenv`` package folder and the host's ``pynvml.py``."""
    import importlib.util

    package = Path(__file__).resolve().parent.parent
    spec = importlib.util.find_spec("pynvml")
    pynvml = Path(spec.origin).resolve() if spec and spec.origin else None
    return package, pynvml


def local_kernel_side_dir() -> str:
    """A runtime-dir folder of symlinks to the package and pynvml, made once per install.

    Symlinks (not copies) keep it in step with an editable install; the name hashes the
    targets, so a different install gets its own folder.
    """
    package, pynvml = kernel_side_sources()
    digest = hashlib.sha1(f"{package}|{pynvml}".encode()).hexdigest()[:12]
    root = Path(jupyter_runtime_dir()) / f"gpuenv-kernel-side-{digest}"
    if (root / "jupyter_gpuenv").exists():
        return str(root)
    tmp = root.with_name(f"{root.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    (tmp / "fallback").mkdir(parents=True, exist_ok=True)
    os.symlink(package, tmp / "jupyter_gpuenv")
    if pynvml is not None:
        os.symlink(pynvml, tmp / "fallback" / "pynvml.py")
    try:
        os.rename(tmp, root)
    except OSError:
        # Another kernel start made it first; theirs is identical.
        _remove_tree(tmp)
    return str(root)


def _remove_tree(path: Path) -> None:
    for child in (path / "fallback" / "pynvml.py", path / "jupyter_gpuenv"):
        if child.is_symlink():
            child.unlink()
    for folder in (path / "fallback", path):
        if folder.is_dir():
            folder.rmdir()
