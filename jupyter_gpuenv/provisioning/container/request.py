"""Everything a kernel container is created with, decided before Docker is asked.

Kept apart from the provisioner's lifecycle code so each decision (user, mounts,
variables, limits, labels) is plain data that can be read and tested on its own.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest, Mount

from ...docker import labels
from ...errors import PolicyViolation
from ...gpu_set import GpuSet
from ...kernel import KERNEL_PACKAGE
from ..kernel_errors import KernelStartFailed
from ..kernel_side import (
    KERNEL_SIDE_IN_CONTAINER,
    ipykernel_argv,
    kernel_side_env,
    kernel_side_sources,
)
from ..policy.kernel_user import KernelUser, parse_user
from ..policy.launch_gate import (
    NO_NEW_PRIVILEGES,
    LaunchAllowance,
    MountGrant,
    guarded_variable,
    is_secret_variable,
)
from ..policy.user_view import NotSeen, SeenPath, Viewer, replaceable_part, resolve_as
from .orphans import ServerInstance, container_user_label

CONNECTION_FILE_IN_CONTAINER = f"{KERNEL_SIDE_IN_CONTAINER}/run/connection.json"
# A CurveZMQ kernel's writable copy of it: a tmpfs of the kernel's uid, mode 0700, that
# ends with the container (kernel/connection_copy.py makes the copy).
WRITABLE_RUN_IN_CONTAINER = f"{KERNEL_SIDE_IN_CONTAINER}/private"
WRITABLE_CONNECTION_FILE = f"{WRITABLE_RUN_IN_CONTAINER}/connection.json"
CONTAINER_HOME = "/home/gpuenv"

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
    # c.GpuEnv.kernel_env_allowlist: the names a kernelspec may set (None: any unguarded).
    kernel_env_allowlist: list[str] | None = None
    image_env: list[str] = field(default_factory=list)
    gpu_environment: dict[str, str] = field(default_factory=dict)
    device_requests: list[DeviceRequest] = field(default_factory=list)
    allow_root: bool = False
    conda_prefix_in_image: str | None = None
    session_name: str | None = None
    extra_arguments: list[str] = field(default_factory=list)
    # The connection file holds CurveZMQ keys: the kernel starts from a writable copy.
    curve: bool = False


def container_name(environment_id: str, kernel_id: str) -> str:
    """``gpuenv-<env>-<kernel id 8>``, restricted to Docker's name alphabet."""
    raw = f"gpuenv-{environment_id}-{kernel_id[:8]}"
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", raw).strip("-._")
    return name[:120] or f"gpuenv-{kernel_id[:8]}"


def container_user(
    cwd: str | None, allow_root: bool, requested: str | None = None
) -> tuple[KernelUser, bool]:
    """(uid:gid the kernel runs as, whether it runs as root by request).

    ``requested`` is a ``user`` setting already allowed by the policy (the admin's, or a
    kernelspec's). Otherwise the kernel runs as the server's user. A root server runs it
    as the notebook folder's owner when that is not root, else as uid 0 confined by
    create_arguments (every capability dropped, no new privileges): its files belong to
    whoever owns the server's files, and it never has more rights than the server.
    ``allow_root`` only says what a ``user`` setting may ask for.
    """
    if requested:
        user = parse_user(requested)
        return user, user.is_root
    own = KernelUser.of_server()
    if own.uid != 0:
        return own, False
    if cwd:
        try:
            st = os.stat(cwd)
        except OSError:
            st = None
        if st is not None and st.st_uid != 0:
            return KernelUser(st.st_uid, st.st_gid), False
    return KernelUser(0, 0), False


def _mount_parts(spec: Any) -> tuple[str, str, bool]:
    """(source as written, ``~`` expanded; target; read-only) of a mount setting."""
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
    if not str(target).startswith("/"):
        raise KernelStartFailed(f"Mount target {target!r} must be an absolute path.")
    return os.path.expanduser(str(source)), str(target), read_only


def parse_mount(spec: Any) -> Mount:
    """``"host:container[:ro|rw]"`` or ``{"source"|"host", "target"|"container", "read_only"}``."""
    written, target, read_only = _mount_parts(spec)
    source = os.path.realpath(written)
    if not os.path.exists(source):
        raise KernelStartFailed(f"Mount source {source} does not exist on the host.")
    return Mount(target=target, source=source, type="bind", read_only=read_only)


def mount_source(spec: Any) -> str:
    """The source of a mount setting as written (links not followed), for user_view."""
    return os.path.abspath(_mount_parts(spec)[0])


def kernel_command(req: ContainerRequest) -> list[str]:
    """ipykernel in the image's python, reading the mounted connection file.

    With CurveZMQ keys it reads a private writable copy instead (ipykernel rewrites the
    file), made by the kernel side just before it becomes ipykernel (exec).
    """
    if req.curve:
        argv = [
            req.python,
            "-m",
            f"{KERNEL_PACKAGE}.connection_copy",
            CONNECTION_FILE_IN_CONTAINER,
            WRITABLE_CONNECTION_FILE,
            "--",
            *ipykernel_argv(req.python, WRITABLE_CONNECTION_FILE, req.extra_arguments),
        ]
    else:
        argv = ipykernel_argv(req.python, CONNECTION_FILE_IN_CONTAINER, req.extra_arguments)
    if req.conda_prefix_in_image:
        return ["/bin/sh", "-c", CONDA_IN_IMAGE_ACTIVATE, "gpuenv-activate"] + argv
    return argv


def container_environment(req: ContainerRequest, user: str) -> dict[str, str]:
    """Only what the admin allowed from the server, plus explicit and kernel variables."""
    env: dict[str, str] = {}
    for name in req.env_allowlist:
        if name in req.server_env and not is_secret_variable(name):
            env[name] = req.server_env[name]
    configured = req.settings.get("environment") or {}
    if not isinstance(configured, Mapping):
        raise KernelStartFailed("The environment setting must map names to values.")
    env.update({str(k): str(v) for k, v in configured.items()})
    if req.session_name:
        env["JPY_SESSION_NAME"] = req.session_name
    if not user.startswith("0:"):
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


@dataclass
class CheckedFolders:
    """The notebook folder and bind mounts as the kernel's user may have them, with the
    identity (``device:inode``) of every folder checked on the user's behalf, by target."""

    cwd: str | None
    mounts: list[Mount]
    identities: dict[str, str]


def folder_viewer(req: ContainerRequest, kernel_user: KernelUser | None = None) -> Viewer | None:
    """Whose rights folders are checked with: the kernel's uid when this (root) process
    mounts for another account; None when the kernel sees with this process's rights."""
    if kernel_user is None:
        kernel_user, _ = container_user(req.cwd, req.allow_root, req.settings.get("user"))
    if kernel_user.is_root or kernel_user.uid == os.getuid():
        return None
    return Viewer.of(kernel_user)


def checked_folders(req: ContainerRequest, kernel_user: KernelUser | None = None) -> CheckedFolders:
    """Connection file (ro), kernel-side package (ro), notebook folder, admin mounts.

    Mounting for another uid, every folder is resolved as that uid would (user_view): a
    folder behind one they cannot enter is refused, and so is an admin mount whose path
    they could swap for a link of their own before Docker mounts it.
    """
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
    viewer = folder_viewer(req, kernel_user)
    identities: dict[str, str] = {}
    cwd = working_dir(req.cwd)
    if cwd and viewer is not None:
        seen = _seen(str(req.cwd), viewer, "The notebook folder")
        cwd = seen.path if seen.is_dir and seen.path not in SYSTEM_DIRS else None
        if cwd:
            identities[cwd] = seen.identity
    if cwd:
        mounts.append(Mount(cwd, cwd, type="bind", read_only=False))
    taken = {m["Target"] for m in mounts}
    for spec in req.settings.get("mounts") or []:
        mount = parse_mount(spec)
        if mount["Target"] in taken:
            raise KernelStartFailed(f"Mount target {mount['Target']} is used twice.")
        taken.add(mount["Target"])
        if viewer is not None:
            mount = _mount_as(mount, mount_source(spec), viewer, identities)
        mounts.append(mount)
    return CheckedFolders(cwd, mounts, identities)


def container_mounts(req: ContainerRequest) -> list[Mount]:
    """The bind mounts of :func:`checked_folders`."""
    return checked_folders(req).mounts


def _seen(path: str, viewer: Viewer, what: str) -> SeenPath:
    try:
        return resolve_as(path, viewer)
    except NotSeen as err:
        raise PolicyViolation(
            f"{what} cannot be given to the kernel: {err} (as uid {viewer.uid})."
        ) from None


def _mount_as(mount: Mount, source: str, viewer: Viewer, identities: dict[str, str]) -> Mount:
    """``mount`` with its source resolved as ``viewer``; refused when they could not
    reach it or could replace part of it."""
    target = mount["Target"]
    seen = _seen(source, viewer, f"The mount at {target}")
    part = replaceable_part(seen.path, viewer)
    if part is not None:
        child, parent = part
        raise PolicyViolation(
            f"The mount at {target} cannot be given to the kernel: uid {viewer.uid} can "
            f"write {parent} and so could replace {child} with a link to another folder "
            "between this check and Docker's mount. The administrator's mount sources "
            "must lie in folders the kernel's user cannot write."
        )
    identities[target] = seen.identity
    return Mount(target, seen.path, type="bind", read_only=bool(mount["ReadOnly"]))


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


def container_labels(
    req: ContainerRequest, identities: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Kernel, environment, owner; with ``identities``, the folders checked for the
    kernel's user, which the engine compares with what Docker mounted."""
    kernel_labels = {
        labels.KERNEL_ID: req.kernel_id,
        labels.ENVIRONMENT_ID: req.environment_id,
        labels.USER: container_user_label(req.hub_user),
        labels.ROLE: "kernel",
        **req.instance.labels(),
    }
    if identities:
        kernel_labels[labels.CHECKED_MOUNTS] = json.dumps(identities, sort_keys=True)
    return kernel_labels


def create_arguments(req: ContainerRequest) -> dict[str, Any]:
    """Keyword arguments of ``client.containers.create`` for this kernel."""
    kernel_user, root_by_request = container_user(req.cwd, req.allow_root, req.settings.get("user"))
    user = str(kernel_user)
    command = kernel_command(req)
    folders = checked_folders(req, kernel_user)
    args: dict[str, Any] = {
        "image": req.image,
        "name": container_name(req.environment_id, req.kernel_id),
        "entrypoint": command[:1],
        "command": command[1:],
        "user": user,
        "environment": container_environment(req, user),
        "mounts": folders.mounts,
        "labels": container_labels(req, folders.identities),
        # Host network: the kernel binds the connection file's 127.0.0.1 ports, reachable
        # from this host only; no port publishing or address rewriting needed.
        "network_mode": "host",
        # docker-init as PID 1 forwards signals (interrupt!) to the kernel and reaps.
        "init": True,
        "detach": True,
        "stdin_open": False,
        "tty": False,
        # setuid programs of the image (sudo, su) cannot raise the kernel's rights.
        "security_opt": [NO_NEW_PRIVILEGES],
        **resource_limits(req.settings),
    }
    if folders.cwd:
        args["working_dir"] = folders.cwd
    tmpfs: dict[str, str] = {}
    if args["environment"].get("HOME") == CONTAINER_HOME:
        tmpfs[CONTAINER_HOME] = "rw,mode=1777,size=1g"
    if req.curve:
        tmpfs[WRITABLE_RUN_IN_CONTAINER] = private_tmpfs_options(kernel_user)
    if tmpfs:
        args["tmpfs"] = tmpfs
    if req.device_requests:
        args["device_requests"] = req.device_requests
    cap_drop = [str(c) for c in req.settings.get("cap_drop") or []]
    if kernel_user.is_root and not root_by_request:
        cap_drop = ["ALL"]
    if cap_drop:
        args["cap_drop"] = cap_drop
    return args


def private_tmpfs_options(user: KernelUser) -> str:
    """A small tmpfs only the kernel's uid can enter, holding no programs."""
    return f"rw,nosuid,nodev,noexec,mode=0700,uid={user.uid},gid={user.gid},size=1m"


def _image_env_value(image_env: list[str], name: str) -> str | None:
    for item in image_env:
        key, sep, value = item.partition("=")
        if sep and key == name:
            return value
    return None


def allowance_for(
    req: ContainerRequest, gpus: GpuSet, admin_environment: Mapping[str, Any] | None = None
) -> LaunchAllowance:
    """What the last gate lets this kernel have: built from the server and the settings
    the policy passed (the admin's entry, read at launch, and allowed kernelspec keys).

    ``admin_environment``: the variables of the admin's entry, whose device and loader
    variables the kernel may get as set there."""
    server = KernelUser.of_server()
    allowance = LaunchAllowance(server=server, users={server}, gpus=gpus)
    guarded = {
        str(name): str(value)
        for name, value in (admin_environment or {}).items()
        if guarded_variable(str(name))
    }
    allowance.guarded_environment = {**guarded, **req.gpu_environment}
    if req.kernel_env_allowlist is not None:
        allowance.settable_names = frozenset(req.kernel_env_allowlist)
        admin_only = replace(
            req, settings={**req.settings, "environment": dict(admin_environment or {})}
        )
        user, _ = container_user(req.cwd, req.allow_root, req.settings.get("user"))
        allowance.given_environment = container_environment(admin_only, str(user))
    if server.uid == 0:
        allowance.users.add(KernelUser(0, 0))
        owner, _ = container_user(req.cwd, req.allow_root)
        if not owner.is_root:
            allowance.granted_users.add(owner)
    if req.settings.get("user"):
        wanted = parse_user(req.settings["user"])
        allowance.users.add(wanted)
        if req.allow_root and (wanted.is_root or wanted.privileged_group(server.gid)):
            allowance.granted_users.add(wanted)
    package, pynvml = kernel_side_sources()
    allowance.mounts |= {
        MountGrant(req.connection_file, CONNECTION_FILE_IN_CONTAINER, read_only=True),
        MountGrant(str(package), f"{KERNEL_SIDE_IN_CONTAINER}/{KERNEL_PACKAGE}", True),
    }
    if pynvml is not None:
        allowance.mounts.add(
            MountGrant(str(pynvml), f"{KERNEL_SIDE_IN_CONTAINER}/fallback/pynvml.py", True)
        )
    cwd = working_dir(req.cwd)
    if cwd:
        allowance.mounts.add(MountGrant(cwd, cwd))
        allowance.working_dirs.add(cwd)
    for spec in req.settings.get("mounts") or []:
        mount = parse_mount(spec)
        allowance.mounts.add(MountGrant(mount["Source"], mount["Target"], mount["ReadOnly"]))
    allowance.tmpfs_targets.add(CONTAINER_HOME)
    if req.curve:
        allowance.tmpfs_targets.add(WRITABLE_RUN_IN_CONTAINER)
    return allowance


def connection_file_for(
    user: KernelUser, path: str, private_dir: Callable[[], str], kernel_id: str
) -> str | None:
    """A copy of the connection file readable by ``user`` only, or None when not needed.

    jupyter_client writes it 0600 for the server's user. When the kernel runs as another
    uid (a root server's kernel as the notebook folder's owner, or a kernelspec's user) a
    copy owned by that uid, mode 0400, is made in ``private_dir`` (0700, the server's:
    nobody else can list or enter it; Docker mounts the file itself). A server that is
    not root cannot give a file away: its kernels run as itself (the policy sees to it),
    or as root allowed by the admin, which reads the original.
    """
    own = os.getuid()
    if user.uid == own or own != 0 or user.uid == 0:
        return None
    folder = Path(private_dir())
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    copy = folder / f"gpuenv-connection-{kernel_id}.json"
    data = Path(path).read_bytes()
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o400)
    try:
        os.fchown(fd, user.uid, user.gid)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
    finally:
        if fd >= 0:
            os.close(fd)
    return str(copy)
