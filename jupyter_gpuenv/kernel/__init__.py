"""Code that runs inside kernels and probed environments: standard library only, Python >= 3.8.

Only this folder is mounted into kernel containers (as the top-level package
``jupyter_gpuenv_kernel``) and put on local kernels' ``PYTHONPATH``, so its modules import
nothing but the standard library and each other (relative imports), lazily adding
IPython, torch or pynvml where they exist.
"""

from __future__ import annotations

from typing import Any

# The name this folder has inside kernels; kernels load the magic as this extension.
KERNEL_PACKAGE = "jupyter_gpuenv_kernel"


GPUINFO_USAGE = "usage: %gpuinfo [--json]   (GPUs, drivers and the PyTorch build this kernel sees)"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_gpuenv_kernel`` registers the ``%gpuinfo`` magic, and shows the
    doctor's start warning (if the provisioner passed one) with the first cell's output.

    Every kernel loads this at start: what ``%gpuinfo`` needs is imported at its first use,
    so that the kernel answers sooner.
    """
    from .start_warning import show_with_first_cell

    def gpuinfo(line: str = "") -> Any:
        from .gpuinfo import gpuinfo as run

        return run(line)

    gpuinfo.__doc__ = GPUINFO_USAGE
    ipython.register_magic_function(gpuinfo, magic_kind="line", magic_name="gpuinfo")
    show_with_first_cell(ipython)
