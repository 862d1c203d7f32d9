"""One kernelspec per catalog environment, beside the kernelspecs installed on disk.

jupyter_server asks its kernelspec manager for the list on every launcher refresh and
for one spec on every kernel start, so this path must stay cheap: it reads the catalog's
cached environments (probing only on the very first use, when nothing was scanned yet)
and rebuilds its specs only when that list changed.

The spec content comes from :func:`kernelspec_dict`, which ``jupyter gpuenv kernelspecs
install`` writes to disk as well; a spec on disk with the same name is therefore the
same kernel, and the live one (built from the current catalog) is the one listed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import sys
import threading
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

from ..environments.catalog import Catalog
from ..environments.model import KERNEL_NAME_PREFIX, Environment, kernel_name_for
from ..services import Services, shared_services
from .provisioner_base import gpuenv_config_for

RESOURCES = str(Path(__file__).with_name("kernelspec_resources"))
DOCKER_PROVISIONER = "gpuenv-docker-provisioner"
LOCAL_PROVISIONER = "gpuenv-local-provisioner"
FIRST_SCAN_WAIT = 10.0  # seconds the first kernelspec listing waits for the first scan


def has_kernel(env: Environment) -> bool:
    """Whether a kernel can run in ``env``.

    Docker images without ipykernel still can (the provisioner adds a kernel layer) as
    long as they have a python: only an image that was probed and showed none is left
    out. An image that is missing or not probed yet keeps its spec, so starting it says
    why it cannot run (``docker pull ...``). Conda envs and venvs need ipykernel; the
    catalog's ``problems`` say so for those left out. An environment whose start is known
    to fail here (``cannot_start``) is left out too.
    """
    if env.cannot_start:
        return False
    if env.kind == "docker":
        probed_without_python = bool(env.location.get("image_id")) and not (
            env.python_version or env.ipykernel
        )
        return not probed_without_python
    return bool(env.ipykernel and (env.python_executable or env.location.get("prefix")))


def launcher_argv(env: Environment) -> list[str]:
    """The ``argv`` of every gpuenv kernelspec: our launcher, run by this host Python.

    Provisioner-aware clients never run it (the provisioner builds the kernel's command);
    clients that run ``argv`` themselves (VS Code's local kernels) get the same kernel
    through it (jupyter_gpuenv/launch). The interpreter is the one that has jupyter-gpuenv
    now, so an on-disk spec breaks if that Python goes away; ``jupyter gpuenv kernelspecs
    list`` then calls it stale and ``install`` rewrites it.
    """
    return [
        sys.executable,
        "-m",
        "jupyter_gpuenv.launch",
        "--environment",
        env.id,
        "-f",
        "{connection_file}",
    ]


def kernelspec_dict(env: Environment) -> dict[str, Any]:
    """The kernel.json content for ``env`` (the live spec and the on-disk one alike)."""
    provisioner = DOCKER_PROVISIONER if env.kind == "docker" else LOCAL_PROVISIONER
    return {
        "argv": launcher_argv(env),
        "display_name": env.display_name,
        "language": "python",
        # SIGINT: the provisioner's docker kill / process-group signal, or, for clients
        # that run argv, a signal to the launcher, which interrupts the kernel.
        "interrupt_mode": "signal",
        "env": {},
        "metadata": {
            "debugger": True,
            "kernel_provisioner": {
                "provisioner_name": provisioner,
                "config": {"environment_id": env.id},
            },
            "gpuenv": {"environment_id": env.id, "kind": env.kind},
        },
    }


class GpuEnvKernelSpecManager(KernelSpecManager):
    """The normal kernelspecs plus one per catalog environment."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services: Services | None = None
        self._lock = threading.Lock()
        self._specs: dict[str, KernelSpec] = {}
        self._spec_dicts: dict[str, dict[str, Any]] | None = None
        self._first_scan_done = False

    def use_services(self, services: Services) -> None:
        """Share the server's services (its catalog); provisioners find them here."""
        self.services = services
        with self._lock:
            self._spec_dicts = None

    @property
    def catalog(self) -> Catalog:
        return self._get_services().catalog

    def _get_services(self) -> Services:
        if self.services is None:
            self.use_services(shared_services(gpuenv_config_for(self), self.log))
        assert self.services is not None
        return self.services

    def _environments(self, wait: bool = False) -> list[Environment]:
        """The catalog's cached list; ``wait`` (or a first use with nothing cached) scans."""
        catalog = self.catalog
        if not wait:
            envs = list(catalog.cached_environments())
            if envs or self._first_scan_done:
                return envs
        self._first_scan_done = True
        try:
            if wait:
                return list(_run_blocking(catalog.list_environments_sync))
            # A first listing waits for the first scan, but not for long: what is probed
            # by then is listed, the rest once it is (Lab asks again when it sees them).
            return list(_run_blocking(lambda: catalog.environments_within(FIRST_SCAN_WAIT)))
        except Exception as err:
            self.log.warning("gpuenv: environments could not be listed: %s", err)
            return []

    def gpuenv_specs(self, wait: bool = False) -> dict[str, KernelSpec]:
        """Kernel name -> spec for every catalog environment a kernel can run in."""
        dicts = {
            kernel_name_for(env.id): kernelspec_dict(env)
            for env in self._environments(wait)
            if has_kernel(env)
        }
        with self._lock:
            if dicts != self._spec_dicts:
                self._specs = {
                    name: KernelSpec(resource_dir=RESOURCES, **spec) for name, spec in dicts.items()
                }
                self._spec_dicts = dicts
            return self._specs

    def find_kernel_specs(self) -> dict[str, str]:
        """On-disk specs plus ours; a live spec replaces an on-disk one of the same name."""
        found = super().find_kernel_specs()
        for name in self.gpuenv_specs():
            found[name] = RESOURCES
        if self.allowed_kernelspecs:
            found = {k: v for k, v in found.items() if k in self.allowed_kernelspecs}
        return found

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """A copy of the live spec for catalog environments, else the on-disk one."""
        name = kernel_name.lower()
        spec = self.gpuenv_specs().get(name)
        if spec is None:
            try:
                return super().get_kernel_spec(kernel_name)
            except NoSuchKernel:
                if not name.startswith(KERNEL_NAME_PREFIX):
                    raise
            # Named after an environment the cached list does not hold (yet): the
            # listing saved by an earlier server may predate it, so wait for a scan.
            spec = self.gpuenv_specs(wait=True).get(name)
            if spec is None:
                raise NoSuchKernel(kernel_name)
        if self.allowed_kernelspecs and kernel_name not in self.allowed_kernelspecs:
            raise NoSuchKernel(kernel_name)
        return copy.deepcopy(spec)

    def get_all_specs(self) -> dict[str, Any]:
        """The REST listing, without one directory scan per kernel name."""
        ours = self.gpuenv_specs()
        result: dict[str, Any] = {}
        for name, resource_dir in self.find_kernel_specs().items():
            try:
                if name in ours:
                    spec = ours[name]
                else:
                    spec = self._get_kernel_spec_by_name(name, resource_dir)
                result[name] = {"resource_dir": resource_dir, "spec": spec.to_dict()}
            except NoSuchKernel:
                pass
            except Exception:
                self.log.warning("Error loading kernelspec %r", name, exc_info=True)
        return result


def _run_blocking(func: Any) -> Any:
    """Call a sync function that may itself run an event loop, even from inside one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return func()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(func).result()
