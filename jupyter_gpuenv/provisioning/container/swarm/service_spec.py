"""A kernel as a one-replica Swarm service, decided before the manager is asked.

The same decisions as a Docker-mode container (container_spec: user, environment
allowlist, mounts, limits, labels) translated into docker-py's service types, plus what
only a cluster needs: GPUs as a generic-resource reservation that Swarm allocates, the
connection file (key and CurveZMQ keys) as a Swarm secret, and ports the kernel binds on
every address of its node's host network. No-new-privileges as the engine's API allows
(engine_privileges.py).
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from docker.types import (
    ContainerSpec,
    Mount,
    Resources,
    RestartPolicy,
    SecretReference,
    TaskTemplate,
)
from docker.utils import parse_bytes

from ....docker import labels
from ....gpu_set import GpuSet
from ...kernel_errors import KernelStartFailed
from ...kernel_side import ipykernel_argv
from ..request import (
    CONDA_IN_IMAGE_ACTIVATE,
    CONNECTION_FILE_IN_CONTAINER,
    CONTAINER_HOME,
    ContainerRequest,
    container_labels,
    container_name,
    create_arguments,
    resource_limits,
)
from .engine_privileges import service_privileges

# Swarm mounts secrets under /run/secrets/<file name> in the task's container.
SECRETS_DIR = "/run/secrets"
# Which secret belongs to which kernel and server: the same labels as the service.
SECRET_ROLE = "kernel-connection"
# Random kernel ports come from here: high, and below the usual ephemeral range start on
# Linux (32768) is avoided so outgoing connections on the node rarely take them.
PORT_RANGE = (20000, 32000)
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
# Label on the service recording its ports, so later kernels avoid them on any node.
PORTS_LABEL = f"{labels.PREFIX}.ports"
GRACE_NS = 500_000_000  # removal follows a shutdown or is a kill: no long grace
# python -c: copy the connection secret (argv 1) to a private file (argv 2), then run
# ipykernel_launcher on it with the remaining arguments, as ``python -m`` would.
COPY_SECRET_THEN_RUN = (
    "import os, runpy, shutil, sys\n"
    "src, dst = sys.argv[1:3]\n"
    "shutil.copyfile(src, dst)\n"
    "os.chmod(dst, 0o600)\n"
    "sys.argv = ['ipykernel_launcher', '-f', dst] + sys.argv[3:]\n"
    "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n"
)


@dataclass(frozen=True)
class ServiceRequest:
    """What a service-mode start adds to a Docker kernel's ContainerRequest."""

    container: ContainerRequest
    secret_id: str
    secret_name: str
    gpu_resource: str
    gpu_count: int
    ports: dict[str, int]
    # The Engine API version the spec is sent at: it decides whether NoNewPrivileges holds.
    api_version: str


def swarm_gpu_count(gpus: GpuSet, resource: str) -> int:
    """How many ``resource`` items the service reserves; "all" and ids are refused.

    Swarm decides which GPUs a task gets, so the configuration can only say how many.
    """
    if gpus.is_none:
        return 0
    if gpus.count is not None:
        return gpus.count
    if gpus.is_all:
        raise KernelStartFailed(
            'gpus="all" cannot be scheduled in swarm mode: each node has its own GPUs and '
            f"Swarm hands out {resource} by count. Set gpus to a count (e.g. 1) for this "
            'environment, or "none".'
        )
    raise KernelStartFailed(
        f"gpus={list(gpus.ids or ())} names particular GPUs, which cannot be scheduled in "
        f"swarm mode: Swarm picks the node and its free {resource}. Set gpus to a count "
        '(e.g. 1) for this environment, or "none".'
    )


def swarm_gpu_environment(gpu_count: int) -> dict[str, str]:
    """Variables for the NVIDIA runtime: none visible without a reservation.

    With a reservation the runtime's ``swarm-resource`` setting maps the assigned ids
    (DOCKER_RESOURCE_<kind>) to devices; NVIDIA_VISIBLE_DEVICES is left to it.
    """
    if gpu_count == 0:
        return {"NVIDIA_VISIBLE_DEVICES": "void"}
    return {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}


def pick_ports(taken: Collection[int], rng: random.Random | None = None) -> dict[str, int]:
    """Five distinct random ports of PORT_RANGE, none of ``taken``."""
    rng = rng or random.SystemRandom()
    chosen: dict[str, int] = {}
    used = set(taken)
    while len(chosen) < len(PORT_NAMES):
        port = rng.randint(*PORT_RANGE)
        if port not in used:
            used.add(port)
            chosen[PORT_NAMES[len(chosen)]] = port
    return chosen


def ports_in_labels(service_labels: Mapping[str, str]) -> set[int]:
    """The ports a kernel service recorded in PORTS_LABEL."""
    text = service_labels.get(PORTS_LABEL, "")
    return {int(p) for p in text.split(",") if p.strip().isdigit()}


def connection_payload(info: Mapping[str, Any], ports: Mapping[str, int]) -> bytes:
    """The kernel's connection file: bind every address of the node, these ports."""
    data: dict[str, Any] = {}
    for name, value in info.items():
        data[name] = value.decode() if isinstance(value, bytes) else value
    data.update(ports)
    data["ip"] = "0.0.0.0"
    return json.dumps(data, sort_keys=True).encode()


def secret_name(req: ContainerRequest) -> str:
    """Unique per start: a restart's new secret never meets the old one."""
    return f"{service_name(req)}-{secrets.token_hex(3)}"


def connection_path(name: str) -> str:
    return f"{SECRETS_DIR}/{name}.json"


def service_command(req: ContainerRequest, connection_file: str) -> list[str]:
    """ipykernel in the image's python, on a private copy of the connection secret.

    ipykernel rewrites its connection file when the CurveZMQ keys it read back differ in
    type from its own (always), and secrets are read-only: the copy is on a tmpfs.
    """
    argv = ipykernel_argv(req.python, CONNECTION_FILE_IN_CONTAINER, req.extra_arguments)
    argv[1:5] = ["-c", COPY_SECRET_THEN_RUN, connection_file, CONNECTION_FILE_IN_CONTAINER]
    if req.conda_prefix_in_image:
        return ["/bin/sh", "-c", CONDA_IN_IMAGE_ACTIVATE, "gpuenv-activate"] + argv
    return argv


def service_mounts(
    checked: list[Mount], settings: Mapping[str, Any], home_tmpfs: bool
) -> list[Mount]:
    """Docker mode's checked mounts without the connection file (a secret here), plus
    tmpfs."""
    mounts = [m for m in checked if m["Target"] != CONNECTION_FILE_IN_CONTAINER]
    run_dir = CONNECTION_FILE_IN_CONTAINER.rsplit("/", 1)[0]
    mounts.append(Mount(run_dir, None, type="tmpfs", tmpfs_size=1 << 20, tmpfs_mode=0o1777))
    if home_tmpfs:
        mounts.append(
            Mount(CONTAINER_HOME, None, type="tmpfs", tmpfs_size=1 << 30, tmpfs_mode=0o1777)
        )
    shm = settings.get("shm_size")
    if shm:
        size = int(parse_bytes(shm)) if isinstance(shm, str) else int(shm)
        mounts.append(Mount("/dev/shm", None, type="tmpfs", tmpfs_size=size, tmpfs_mode=0o1777))
    return mounts


def service_resources(settings: Mapping[str, Any], resource: str, gpu_count: int) -> Resources:
    """Limits of container_spec (memory, CPUs) and the GPU reservation."""
    limits = resource_limits(settings)
    mem = limits.get("mem_limit")
    return Resources(
        cpu_limit=limits.get("nano_cpus"),
        mem_limit=int(parse_bytes(mem) if isinstance(mem, str) else mem) if mem else None,
        generic_resources={resource: gpu_count} if gpu_count else None,
    )


def service_labels(req: ContainerRequest, ports: Mapping[str, int]) -> dict[str, str]:
    """container_spec's labels (kernel, environment, owner), plus the ports taken."""
    return {**container_labels(req), PORTS_LABEL: ",".join(str(p) for p in ports.values())}


def secret_labels(req: ContainerRequest) -> dict[str, str]:
    return {**container_labels(req), labels.ROLE: SECRET_ROLE}


def task_template(spec: ServiceRequest) -> TaskTemplate:
    """The service's task: one kernel container on the host network of its node."""
    req = spec.container
    # The gated Docker-mode decisions (user, environment, capabilities, folders as the
    # kernel's user sees them), not new ones.
    decided = create_arguments(req)
    user = str(decided["user"])
    environment: dict[str, str] = dict(decided["environment"])
    uid, _, gid = user.partition(":")
    secret_file = connection_path(spec.secret_name)
    secret = SecretReference(
        spec.secret_id,
        spec.secret_name,
        filename=secret_file.rsplit("/", 1)[-1],
        uid=uid if uid.isdigit() else "0",
        gid=gid if gid.isdigit() else (uid if uid.isdigit() else "0"),
        mode=0o400,
    )
    command = service_command(req, secret_file)
    # Every capability dropped, whatever the uid, and no-new-privileges where the API
    # keeps it (engines before 25.0 drop it: started there only with the admin's opt-out),
    # so a setuid program inside finds no capability to gain either way.
    cap_drop = sorted({"ALL", *(decided.get("cap_drop") or [])})
    container = ContainerSpec(
        req.image,
        command=command[:1],
        args=command[1:],
        env=[f"{name}={value}" for name, value in environment.items()],
        workdir=decided.get("working_dir"),
        user=user,
        labels=container_labels(req),
        mounts=service_mounts(
            decided["mounts"], req.settings, environment.get("HOME") == CONTAINER_HOME
        ),
        secrets=[secret],
        init=True,
        stop_grace_period=GRACE_NS,
        cap_drop=cap_drop,
    )
    privileges = service_privileges(spec.api_version)
    if privileges is not None:
        container["Privileges"] = privileges  # docker-py has no typed field for it
    return TaskTemplate(
        container_spec=container,
        resources=service_resources(req.settings, spec.gpu_resource, spec.gpu_count),
        restart_policy=RestartPolicy(condition="none"),
        networks=["host"],
    )


def service_name(req: ContainerRequest) -> str:
    """Docker-mode's container name plus a random suffix (Swarm names are cluster-wide,
    and a restart's new service may meet the old one while it goes)."""
    name = container_name(req.environment_id, req.kernel_id)
    name = re.sub(r"[^a-zA-Z0-9-]+", "-", name)[:50].strip("-")
    return f"{name}-{secrets.token_hex(3)}"
