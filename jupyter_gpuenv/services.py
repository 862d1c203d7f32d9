"""The long-lived pieces, built once per configuration and shared by every face.

The server, the ``jupyter gpuenv`` command and provisioners run by plain jupyter_client
(nbclient, papermill, console) all use :meth:`Services.build`, so each answers the same:
the catalog carries the doctor's ``compatibility`` and the Docker GPU problems wherever
it is listed, and the host is read once per interval with the user's GPU grant applied.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from .config import GpuEnv
from .docker.client import docker_client
from .doctor.docker_gpus import runtime_annotator
from .doctor.host_probe import HostProbe, docker_nvidia_runtime
from .doctor.report import CompatibilityAnnotator
from .environments.catalog import UNSET, Catalog
from .gpu.grant import read_user_grant
from .gpu_set import GpuSet

_shared: dict[str, Services] = {}
_shared_lock = threading.Lock()


@dataclass
class Services:
    """Configuration, catalog and host probe of one process for one configuration."""

    config: GpuEnv
    catalog: Catalog
    host: HostProbe
    grant: GpuSet
    log: logging.Logger | None = None

    @classmethod
    def build(
        cls,
        config: GpuEnv,
        log: logging.Logger | None = None,
        *,
        cache_path: Path | None | Any = UNSET,
    ) -> Services:
        """Everything wired: the catalog with both annotators, the host with the grant."""
        grant = read_user_grant(config.user_gpus_env)
        docker_host = config.docker_host or None
        host = HostProbe(
            grant=grant, docker_runtime=lambda: docker_nvidia_runtime(docker_host=docker_host)
        )
        catalog = Catalog(config, log=log, cache_path=cache_path)
        catalog.annotators.append(runtime_annotator(config, log))
        catalog.annotators.append(CompatibilityAnnotator(host, config, log=log))
        return cls(config=config, catalog=catalog, host=host, grant=grant, log=log)

    def docker(self, ping: bool = False) -> docker.DockerClient:
        """The shared client of the configured engine."""
        return docker_client(self.config.docker_host or None, ping=ping)

    def stop(self) -> None:
        """Stop the catalog's worker threads (the CLI after one command, the server at exit)."""
        self.catalog.stop()


def shared_services(config: GpuEnv, log: logging.Logger | None = None) -> Services:
    """One Services per distinct configuration in this process (plain jupyter_client use)."""
    key = config_key(config)
    with _shared_lock:
        services = _shared.get(key)
        if services is None:
            services = _shared[key] = Services.build(config, log)
        return services


def config_key(config: GpuEnv) -> str:
    """Every configurable setting's value, as one comparable string."""
    names = sorted(config.class_trait_names(config=True))
    values = {name: getattr(config, name) for name in names}
    return json.dumps(values, sort_keys=True, default=str)
