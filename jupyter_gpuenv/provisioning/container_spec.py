"""Everything a kernel container is created with, decided before Docker is asked.

Kept apart from the provisioner's lifecycle code so each decision (user, mounts,
variables, limits, labels) is plain data that can be read and tested on its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.types import Mount

from ..docker import labels
from ..kernel import KERNEL_PACKAGE
from .errors import KernelStartFailed
from .kernel_side import (
    KERNEL_SIDE_IN_CONTAINER,
    ipykernel_argv,
    kernel_side_env,
    kernel_side_sources,
)
from .orphans import ServerInstance, container_user_label

CONNECTION_FILE_IN_CONTAINER = f"{KERNEL_SIDE_IN_CONTAINER}/run/connection.json"
CONTAINER_HOME = "/home/gpuenv"
NOBODY = (65534, 65534)
# Never mounted as a kernel's working directory: they would shadow the image's system.
SYSTEM_DIRS = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib64",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/sys",
        "/usr",
        "/var",
        "/home",
        "/tmp",
    }
)
# Keys of a docker_images entry or an allowed kernelspec override the container uses.
RESOURCE_KEYS = ("mem_limit", "cpus", "shm_size")

# A small shell step for conda envs inside images (``conda_env``): activate like conda,
# then exec python so the kernel is the init process's direct child and gets signals.
CONDA_IN_IMAGE_ACTIVATE = (
    'for f in "$CONDA_PREFIX"/etc/conda/activate.d/*.sh; do [ -r "$f" ] && . "$f"; done; exec "$@"'
)


@dataclass
class ContainerRequest:
    """Inputs of one kernel container, gathered by the provisioner."""

    kernel_id: str
    environment_id: str
    image: str
    python: str
    connection_file: str
    cwd: str | None
    settings: dict[str, Any]
    instance: ServerInstance
    hub_user: str = ""
    server_env: Mapping[str, str] = field(default_factory=dict)
    env_allowlist: list[str] = field(default_factory=list)
    image_env: list[str] = field(default_factory=list)
    gpu_environment: dict[str, str] = field(default_factory=dict)
    device_requests: list[Any] = field(default_factory=list)
    allow_root: bool = False
    conda_prefix_in_image: str | None = None
    session_name: str | None = None
    extra_arguments: list[str] = field(default_factory=list)


def container_name(environment_id: str, kernel_id: str) -> str:
    """``gpuenv-<env>-<kernel id 8>``, restricted to Docker's name alphabet."""
    raw = f"gpuenv-{environment_id}-{kernel_id[:8]}"
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", raw).strip("-._")
    return name[:120] or f"gpuenv-{kernel_id[:8]}"


def container_user(cwd: str | None, allow_root: bool, requested: str | None = None) -> str:
    """uid:gid the kernel runs as: the server's user, never root unless allowed.

    A server running as root (without docker_allow_root) runs kernels as the owner of
    the notebook folder when that is not root, else as nobody.
    """
    if requested:
        return str(requested)
    uid, gid = os.getuid(), os.getgid()
    if uid != 0 or allow_root:
        return f"{uid}:{gid}"
    if cwd:
        try:
            st = os.stat(cwd)
        except OSError:
            st = None
        if st is not None and st.st_uid != 0:
            return f"{st.st_uid}:{st.st_gid}"
    return f"{NOBODY[0]}:{NOBODY[1]}"


def parse_mount(spec: Any) -> Mount:
    """``"host:container[:ro|rw]"`` or ``{"source"|"host", "target"|"container", "read_only"}``."""
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise KernelStartFailed(
                f"Mount {spec!r} must look like 'host_path:container_path[:ro|rw]'."
            )
        source, target = parts[0], parts[1]
        read_only = len(parts) == 3 and parts[2] == "ro"
    elif isinstance(spec, Mapping):
        source = spec.get("source", spec.get("host"))
        target = spec.get("target", spec.get("container"))
        read_only = bool(spec.get("read_only", spec.get("mode") == "ro"))
        if not source or not target:
            raise KernelStartFailed(f"Mount {dict(spec)!r} needs 'source' and 'target'.")
    else:
        raise KernelStartFailed(f"Mount {spec!r} must be a string or a mapping.")
    source = os.path.abspath(os.path.expanduser(str(source)))
    if not str(target).startswith("/"):
        raise KernelStartFailed(f"Mount target {target!r} must be an absolute path.")
    if not os.path.exists(source):
        raise KernelStartFailed(f"Mount source {source} does not exist on the host.")
    return Mount(target=str(target), source=source, type="bind", read_only=read_only)


def kernel_command(req: ContainerRequest) -> list[str]:
    """ipykernel in the image's python, reading the mounted connection file."""
    argv = ipykernel_argv(req.python, CONNECTION_FILE_IN_CONTAINER, req.extra_arguments)
    if req.conda_prefix_in_image:
        return ["/bin/sh", "-c", CONDA_IN_IMAGE_ACTIVATE, "gpuenv-activate"] + argv
    return argv


def container_environment(req: ContainerRequest, user: str) -> dict[str, str]:
    """Only what the admin allowed from the server, plus explicit and kernel variables."""
    env: dict[str, str] = {}
    for name in req.env_allowlist:
        if name in req.server_env:
            env[name] = req.server_env[name]
    configured = req.settings.get("environment") or {}
    if not isinstance(configured, Mapping):
        raise KernelStartFailed("The environment setting must map names to values.")
    env.update({str(k): str(v) for k, v in configured.items()})
    if req.session_name:
        env["JPY_SESSION_NAME"] = req.session_name
    if not user.startswith("0:") and user not in ("0", "root"):
        env.setdefault("HOME", CONTAINER_HOME)
    if req.conda_prefix_in_image:
        prefix = req.conda_prefix_in_image
        name = os.path.basename(prefix)
        image_path = _image_env_value(req.image_env, "PATH") or "/usr/local/bin:/usr/bin:/bin"
        env.update(
            {
                "CONDA_PREFIX": prefix,
                "CONDA_DEFAULT_ENV": name,
                "CONDA_PROMPT_MODIFIER": f"({name}) ",
                "CONDA_SHLVL": "1",
                "PATH": f"{prefix}/bin:{image_path}",
            }
        )
    env.update(req.gpu_environment)
    env.update(
        kernel_side_env(
            req.environment_id,
            req.kernel_id,
            KERNEL_SIDE_IN_CONTAINER,
            env.get("PYTHONPATH") or _image_env_value(req.image_env, "PYTHONPATH"),
        )
    )
    return env


def container_mounts(req: ContainerRequest) -> list[Mount]:
    """Connection file (ro), kernel-side package (ro), notebook folder, admin mounts."""
    package, pynvml = kernel_side_sources()
    mounts = [
        Mount(CONNECTION_FILE_IN_CONTAINER, req.connection_file, type="bind", read_only=True),
        Mount(
            f"{KERNEL_SIDE_IN_CONTAINER}/{KERNEL_PACKAGE}",
            str(package),
            type="bind",
            read_only=True,
        ),
    ]
    if pynvml is not None:
        mounts.append(
            Mount(
                f"{KERNEL_SIDE_IN_CONTAINER}/fallback/pynvml.py",
                str(pynvml),
                type="bind",
                read_only=True,
            )
        )
    cwd = working_dir(req.cwd)
    if cwd:
        mounts.append(Mount(cwd, cwd, type="bind", read_only=False))
    taken = {m["Target"] for m in mounts}
    for spec in req.settings.get("mounts") or []:
        mount = parse_mount(spec)
        if mount["Target"] in taken:
            raise KernelStartFailed(f"Mount target {mount['Target']} is used twice.")
        taken.add(mount["Target"])
        mounts.append(mount)
    return mounts


def working_dir(cwd: str | None) -> str | None:
    """The notebook folder when it can be mounted at the same path, else None."""
    if not cwd:
        return None
    path = os.path.realpath(cwd)
    if path in SYSTEM_DIRS or not os.path.isdir(path):
        return None
    return path


def resource_limits(settings: Mapping[str, Any]) -> dict[str, Any]:
    """mem_limit, cpus (as nano_cpus) and shm_size in docker-py's create arguments."""
    limits: dict[str, Any] = {}
    if settings.get("mem_limit"):
        limits["mem_limit"] = settings["mem_limit"]
    if settings.get("cpus"):
        try:
            limits["nano_cpus"] = int(float(settings["cpus"]) * 1e9)
        except (TypeError, ValueError) as err:
            raise KernelStartFailed(f"cpus must be a number, not {settings['cpus']!r}") from err
    if settings.get("shm_size"):
        limits["shm_size"] = settings["shm_size"]
    return limits


def container_labels(req: ContainerRequest) -> dict[str, str]:
    return {
        labels.KERNEL_ID: req.kernel_id,
        labels.ENVIRONMENT_ID: req.environment_id,
        labels.USER: container_user_label(req.hub_user),
        labels.ROLE: "kernel",
        **req.instance.labels(),
    }


def create_arguments(req: ContainerRequest) -> dict[str, Any]:
    """Keyword arguments of ``client.containers.create`` for this kernel."""
    user = container_user(req.cwd, req.allow_root, req.settings.get("user"))
    command = kernel_command(req)
    args: dict[str, Any] = {
        "image": req.image,
        "name": container_name(req.environment_id, req.kernel_id),
        "entrypoint": command[:1],
        "command": command[1:],
        "user": user,
        "environment": container_environment(req, user),
        "mounts": container_mounts(req),
        "labels": container_labels(req),
        # Host network: the kernel binds the connection file's 127.0.0.1 ports, reachable
        # from this host only; no port publishing or address rewriting needed.
        "network_mode": "host",
        # docker-init as PID 1 forwards signals (interrupt!) to the kernel and reaps.
        "init": True,
        "detach": True,
        "stdin_open": False,
        "tty": False,
        **resource_limits(req.settings),
    }
    cwd = working_dir(req.cwd)
    if cwd:
        args["working_dir"] = cwd
    if args["environment"].get("HOME") == CONTAINER_HOME:
        args["tmpfs"] = {CONTAINER_HOME: "rw,mode=1777,size=1g"}
    if req.device_requests:
        args["device_requests"] = req.device_requests
    if req.settings.get("cap_drop"):
        args["cap_drop"] = list(req.settings["cap_drop"])
    return args


def _image_env_value(image_env: list[str], name: str) -> str | None:
    for item in image_env:
        key, sep, value = item.partition("=")
        if sep and key == name:
            return value
    return None


def connection_file_for(user: str, path: str, runtime_dir: str, kernel_id: str) -> str:
    """The connection file the container can read as ``user``.

    jupyter_client writes it 0600 for the server's user; when the kernel runs as another
    uid (a root server without docker_allow_root) a private copy owned by that uid is
    mounted instead.
    """
    uid_text, _, gid_text = user.partition(":")
    if not uid_text.isdigit() or int(uid_text) == os.getuid():
        return path
    uid, gid = int(uid_text), int(gid_text or uid_text)
    Path(runtime_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = Path(runtime_dir) / f"gpuenv-connection-{kernel_id}.json"
    data = Path(path).read_bytes()
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chown(copy, uid, gid)
    return str(copy)
