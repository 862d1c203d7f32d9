"""What every gpuenv kernel gets of ours: the kernel-side package, its variables, its argv.

Only ``jupyter_gpuenv/kernel`` (standard library only) reaches kernels: mounted read-only
into containers, and linked into a runtime folder on local kernels' ``PYTHONPATH``, as the
top-level package ``jupyter_gpuenv_kernel``, whose ``%gpuinfo`` extension ipykernel loads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.manager import KernelManager
from jupyter_core.paths import jupyter_runtime_dir
from packaging.version import InvalidVersion, Version

from ..environments.model import Environment
from ..kernel import KERNEL_PACKAGE
from ..kernel.start_warning import START_WARNING_VARIABLE

# The magic is loaded through extra_extensions so the user's own ``extensions`` config
# stays intact (a command-line ``extensions=`` would replace it).
EXTENSION_ARG = f"--IPKernelApp.extra_extensions={KERNEL_PACKAGE}"
KERNEL_SIDE_IN_CONTAINER = "/opt/jupyter-gpuenv"
# The doctor's warning for a kernel started although it found an error; the kernel side
# prints it with the first cell's output.
START_WARNING_ENV = START_WARNING_VARIABLE
# ipykernel reads CurveZMQ keys from its connection file since 7.4, which needs Python 3.11.
CURVE_IPYKERNEL = "7.4"
CURVE_IPYKERNEL_PYTHON = "3.11"


def ipykernel_argv(python: str, connection_file: str, extra: list[str] | None = None) -> list[str]:
    """The command that starts ipykernel with the ``%gpuinfo`` extension preloaded."""
    return [python, "-m", "ipykernel_launcher", "-f", connection_file, EXTENSION_ARG] + list(
        extra or []
    )


def curve_capable(env: Environment) -> bool:
    """Whether the ipykernel running ``env``'s kernels reads CurveZMQ keys (>= 7.4).

    That is the environment's own ipykernel, or for an image without one the kernel
    layer's, which installs such an ipykernel wherever the image's Python can run it.
    """
    if env.ipykernel:
        return _at_least(env.ipykernel_version, CURVE_IPYKERNEL)
    if env.kind == "docker":
        return _at_least(env.python_version, CURVE_IPYKERNEL_PYTHON)
    return False


def use_curve(km: KernelManager | None, requested: str | None, env: Environment | None) -> bool:
    """Encrypt this kernel's channels with CurveZMQ?

    The kernel manager's ``transport_encryption`` decides when set (by the server's
    request or an admin's ``KernelManager.transport_encryption``); unset, gpuenv kernels
    encrypt whenever their ipykernel can, which costs nothing. ``env`` None: the
    ipykernel is not known, so only "required" encrypts.
    """
    policy_of = getattr(km, "_transport_encryption_policy", None)
    if policy_of is None or not zmq.has("curve"):
        return False  # a jupyter_client or libzmq without CurveZMQ
    if requested:
        policy = policy_of(requested)
    elif _configured(km) or _configured(getattr(km, "parent", None)):
        policy = policy_of(None)
    else:
        policy = "auto"
    capable = env is not None and curve_capable(env)
    return bool(policy == "required" or (policy == "auto" and capable))


def _configured(manager: Any) -> bool:
    """Whether the admin's config sets ``transport_encryption`` for this manager's class."""
    config = getattr(manager, "config", None)
    if manager is None or config is None:
        return False
    for cls in type(manager).__mro__:
        section = config.get(cls.__name__) if cls.__name__ in config else None
        if section is not None and "transport_encryption" in section:
            return True
    return False


def _at_least(version: str | None, minimum: str) -> bool:
    try:
        return version is not None and Version(version) >= Version(minimum)
    except InvalidVersion:
        return False


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
    """The installed kernel-side folder (``jupyter_gpuenv/kernel``) and the host's pynvml.py."""
    package = Path(__file__).resolve().parent.parent / "kernel"
    spec = importlib.util.find_spec("pynvml")
    pynvml = Path(spec.origin).resolve() if spec and spec.origin else None
    return package, pynvml


def local_kernel_side_dir() -> str:
    """A runtime-dir folder of symlinks to the kernel side and pynvml, made once per install.

    Symlinks (not copies) keep it in step with an editable install; the name hashes the
    targets, so a different install gets its own folder.
    """
    package, pynvml = kernel_side_sources()
    digest = hashlib.sha1(f"{package}|{pynvml}".encode()).hexdigest()[:12]
    root = Path(jupyter_runtime_dir()) / f"gpuenv-kernel-side-{digest}"
    if (root / KERNEL_PACKAGE).exists():
        return str(root)
    tmp = root.with_name(f"{root.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    (tmp / "fallback").mkdir(parents=True, exist_ok=True)
    os.symlink(package, tmp / KERNEL_PACKAGE)
    if pynvml is not None:
        os.symlink(pynvml, tmp / "fallback" / "pynvml.py")
    try:
        os.rename(tmp, root)
    except OSError:
        # Another kernel start made it first; theirs is identical.
        _remove_tree(tmp)
    return str(root)


def _remove_tree(path: Path) -> None:
    for child in (path / "fallback" / "pynvml.py", path / KERNEL_PACKAGE):
        if child.is_symlink():
            child.unlink()
    for folder in (path / "fallback", path):
        if folder.is_dir():
            folder.rmdir()
