"""The last gate: the final ``containers.create`` arguments against the admin's policy.

Whatever built a kernel's container arguments (the catalog, a kernelspec, a cache file,
a future code path), they pass :func:`check_create_arguments` just before Docker sees
them, and it refuses anything beyond what the server's own user and the admin's
configuration allow: keys outside the known set (privileged, cap_add, host PID/IPC/user
namespaces, devices, volumes, ...), a security option other than no-new-privileges, a
root or privileged-group user not granted, an unconfined uid 0, mounts other than the
kernel side, the notebook folder and the admin's, GPUs beyond the effective selection,
and the server's secrets in the environment. It reads only plain data: the arguments
and a :class:`LaunchAllowance` built from ``c.GpuEnv`` at launch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import PolicyViolation
from ...gpu_set import GpuSet, GpuSetError
from .kernel_user import KernelUser, UserSpecError, group_name, parse_user

# Keys the Docker provisioner sets; anything else reaching Docker is refused.
ALLOWED_KEYS = frozenset(
    {
        "image",
        "name",
        "entrypoint",
        "command",
        "user",
        "environment",
        "mounts",
        "labels",
        "network_mode",
        "init",
        "detach",
        "stdin_open",
        "tty",
        "security_opt",
        "cap_drop",
        "mem_limit",
        "nano_cpus",
        "shm_size",
        "working_dir",
        "tmpfs",
        "device_requests",
    }
)
NO_NEW_PRIVILEGES = "no-new-privileges"
# The kernel binds 127.0.0.1 ports of the connection file: the one namespace it shares.
KERNEL_NETWORK = "host"
_NUMERIC_USER = re.compile(r"[0-9]+:[0-9]+")
# Never handed to a kernel from the server's environment, even when allowlisted.
SECRET_ENV_PREFIXES = ("JUPYTERHUB_",)
SECRET_ENV_NAMES = frozenset({"JPY_API_TOKEN", "JUPYTER_TOKEN", "JUPYTER_SERVER_TOKEN"})
SECRETS_STAY_OUT = (
    "the server's credentials never enter kernel containers, even when in "
    "c.GpuEnv.docker_environment_allowlist"
)


# Variables a container runtime reads to pick devices (the NVIDIA runtime's NVIDIA_*,
# Swarm's generic resources as DOCKER_RESOURCE_<KIND>, whatever the kind's spelling), and
# the dynamic loader's (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, ...), which change what
# every process of the kernel runs: only the administrator and jupyter-gpuenv set them.
DEVICE_VARIABLE_PREFIXES = ("NVIDIA_", "DOCKER_RESOURCE_")
NOT_ALLOWLISTED = "not among the names c.GpuEnv.kernel_env_allowlist lets a kernelspec set"
LOADER_VARIABLE_PREFIXES = ("LD_",)


def guarded_variable(name: str) -> str | None:
    """Why a kernelspec or request may not set variable ``name``; None when it may."""
    upper = name.strip().upper()
    if upper.startswith(DEVICE_VARIABLE_PREFIXES):
        return "it would change the GPUs"
    if upper.startswith(LOADER_VARIABLE_PREFIXES):
        return "it would change what the kernel's processes load"
    return None


@dataclass(frozen=True)
class MountGrant:
    """A bind mount a kernel may have; ``read_only`` means it must be read-only."""

    source: str
    target: str
    read_only: bool = False


@dataclass
class LaunchAllowance:
    """What one kernel container may get, from the admin's configuration and the server.

    ``users`` are the uid:gid the kernel may run as (the server's, a root server's
    confined uid 0, an allowed kernelspec ``user``), judged further on uid 0 and
    privileged groups; ``granted_users`` are taken as they are: root granted by
    ``docker_allow_root``, or the notebook folder's owner and group as a root server
    read them from the file system.
    """

    server: KernelUser
    users: set[KernelUser] = field(default_factory=set)
    granted_users: set[KernelUser] = field(default_factory=set)
    mounts: set[MountGrant] = field(default_factory=set)
    working_dirs: set[str] = field(default_factory=set)
    gpus: GpuSet = field(default_factory=GpuSet.none)
    tmpfs_targets: set[str] = field(default_factory=set)
    # The values of guarded variables (guarded_variable) the kernel may get: the GPU
    # choice's own and the administrator's.
    guarded_environment: dict[str, str] = field(default_factory=dict)
    # With c.GpuEnv.kernel_env_allowlist: the names a kernelspec may set, and the
    # variables the server and the admin's entry give the kernel (any other is refused).
    settable_names: frozenset[str] | None = None
    given_environment: dict[str, str] = field(default_factory=dict)


def check_create_arguments(args: Mapping[str, Any], allowance: LaunchAllowance) -> None:
    """Raise PolicyViolation naming everything in ``args`` beyond ``allowance``."""
    refused: list[str] = []
    extra = sorted(str(k) for k in args if k not in ALLOWED_KEYS)
    if extra:
        refused.append(f"container settings outside the kernel's set ({', '.join(extra)})")
    if args.get("network_mode") != KERNEL_NETWORK:
        refused.append(f"network mode {args.get('network_mode')!r}")
    security = args.get("security_opt")
    if not isinstance(security, list) or security != [NO_NEW_PRIVILEGES]:
        refused.append(f"security options {security!r} (only {NO_NEW_PRIVILEGES})")
    refused += _check_user(args, allowance)
    refused += _check_mounts(args.get("mounts"), allowance)
    refused += _check_tmpfs(args.get("tmpfs"), allowance)
    working_dir = args.get("working_dir")
    if working_dir is not None and working_dir not in allowance.working_dirs:
        refused.append(f"working directory {working_dir!r}")
    refused += _check_devices(args.get("device_requests"), allowance.gpus)
    refused += _check_environment(args.get("environment"), allowance)
    if refused:
        raise PolicyViolation(
            "The kernel container was not created: it would get more than the "
            "administrator allows: " + "; ".join(refused) + "."
        )


def _check_user(args: Mapping[str, Any], allowance: LaunchAllowance) -> list[str]:
    spec = args.get("user")
    if not isinstance(spec, str) or not _NUMERIC_USER.fullmatch(spec):
        return [f"user {spec!r} (must be a numeric uid:gid)"]
    try:
        user = parse_user(spec)
    except UserSpecError as err:
        return [str(err)]
    if user not in allowance.users and user not in allowance.granted_users:
        return [f"user {spec} (not the server's user nor one the administrator allows)"]
    if user in allowance.granted_users:
        return []
    problems = []
    if user.is_root:
        cap_drop = args.get("cap_drop")
        if allowance.server.uid != 0:
            problems.append("uid 0 for a server that is not root")
        elif not isinstance(cap_drop, list) or "ALL" not in cap_drop:
            problems.append("uid 0 with capabilities (a root server's kernels drop them all)")
    if user.gid == 0 and not (user.is_root and allowance.server.uid == 0):
        problems.append(f"group 0 for user {spec}")
    elif user.gid != 0 and user.privileged_group(allowance.server.gid):
        problems.append(f"the privileged group {group_name(user.gid)} ({user.gid})")
    return problems


def _mount_fields(mount: object) -> tuple[str, str, str, bool] | None:
    if not isinstance(mount, Mapping):
        return None
    source, target = mount.get("Source"), mount.get("Target")
    if not isinstance(source, str) or not isinstance(target, str):
        return None
    return str(mount.get("Type", "")), source, target, bool(mount.get("ReadOnly"))


def _check_mounts(mounts: object, allowance: LaunchAllowance) -> list[str]:
    if mounts is None:
        return []
    if not isinstance(mounts, list):
        return [f"mounts {mounts!r}"]
    problems = []
    for mount in mounts:
        fields = _mount_fields(mount)
        if fields is None:
            problems.append(f"mount {mount!r}")
            continue
        kind, source, target, read_only = fields
        if kind != "bind" or set(mount) - {"Type", "Source", "Target", "ReadOnly"}:
            problems.append(f"mount {source} -> {target} (only plain bind mounts)")
            continue
        if not _granted(allowance.mounts, os.path.realpath(source), source, target, read_only):
            problems.append(f"mount {source} -> {target}")
    return problems


def _granted(
    grants: Iterable[MountGrant], real: str, source: str, target: str, read_only: bool
) -> bool:
    for grant in grants:
        if grant.target != target or (grant.read_only and not read_only):
            continue
        if grant.source in (source, real):
            return True
    return False


def _check_tmpfs(tmpfs: object, allowance: LaunchAllowance) -> list[str]:
    if tmpfs is None:
        return []
    if not isinstance(tmpfs, Mapping) or not set(tmpfs) <= allowance.tmpfs_targets:
        return [f"tmpfs {tmpfs!r}"]
    return []


def _check_devices(requests: object, gpus: GpuSet) -> list[str]:
    if not requests:
        return []
    if not isinstance(requests, list):
        return [f"device requests {requests!r}"]
    if gpus.is_none:
        return ["GPUs for a kernel that may have none"]
    problems = []
    for request in requests:
        if not isinstance(request, Mapping):
            problems.append(f"device request {request!r}")
            continue
        driver = request.get("Driver") or ""
        ids = [str(i) for i in request.get("DeviceIDs") or []]
        count = request.get("Count") or 0
        if driver == "cdi":
            ids = [i.split("=", 1)[-1] for i in ids if i.startswith("nvidia.com/gpu=")]
            if len(ids) != len(request.get("DeviceIDs") or []):
                problems.append(f"CDI devices {request.get('DeviceIDs')!r}")
                continue
        elif driver not in ("", "nvidia"):
            problems.append(f"device driver {driver!r}")
            continue
        if gpus.is_all:
            continue
        if count and (gpus.count is None or count == -1 or count > gpus.count):
            problems.append(f"{'all' if count == -1 else count} GPUs (allowed: {gpus})")
        if ids and not _covers(gpus, ids):
            problems.append(f"GPUs {', '.join(ids)} (allowed: {gpus})")
    return problems


def _covers(gpus: GpuSet, ids: list[str]) -> bool:
    try:
        return gpus.covers(GpuSet.parse(ids))
    except GpuSetError:
        return False


def is_secret_variable(name: str) -> bool:
    """The Hub's and the server's credentials, which no kernel container may receive."""
    return name.upper().startswith(SECRET_ENV_PREFIXES) or name.upper() in SECRET_ENV_NAMES


def _check_environment(environment: object, allowance: LaunchAllowance) -> list[str]:
    if environment is None:
        return []
    if not isinstance(environment, Mapping):
        return [f"environment {environment!r}"]
    refused = []
    secrets = sorted(str(k) for k in environment if is_secret_variable(str(k)))
    if secrets:
        refused.append(f"the server's secrets ({', '.join(secrets)})")
    for name, value in environment.items():
        why = guarded_variable(str(name))
        if why is None:
            settable = allowance.settable_names
            if settable is not None and str(name) not in settable:
                if allowance.given_environment.get(str(name)) != str(value):
                    refused.append(f"environment variable {name} ({NOT_ALLOWLISTED})")
            continue
        if allowance.guarded_environment.get(str(name)) == str(value):
            continue
        if str(name).upper().startswith("NVIDIA_") and allowance.gpus.is_all:
            continue  # every GPU is the kernel's already
        refused.append(f"environment variable {name} ({why})")
    return refused
