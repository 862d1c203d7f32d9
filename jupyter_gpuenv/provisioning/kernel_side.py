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

from jupyter_core.paths import jupyter_runtime_dir

from ..kernel import KERNEL_PACKAGE
from ..kernel.start_warning import START_WARNING_VARIABLE

# The magic is loaded through extra_extensions so the user's own ``extensions`` config
# stays intact (a command-line ``extensions=`` would replace it).
EXTENSION_ARG = f"--IPKernelApp.extra_extensions={KERNEL_PACKAGE}"
KERNEL_SIDE_IN_CONTAINER = "/opt/jupyter-gpuenv"
# The doctor's warning for a kernel started although it found an error; the kernel side
# prints it with the first cell's output.
START_WARNING_ENV = START_WARNING_VARIABLE


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
