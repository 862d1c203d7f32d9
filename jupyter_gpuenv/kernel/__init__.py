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


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_gpuenv_kernel`` registers the ``%gpuinfo`` magic, and shows the
    doctor's start warning (if the provisioner passed one) with the first cell's output."""
    from .gpuinfo import load_ipython_extension as _load
    from .start_warning import show_with_first_cell

    _load(ipython)
    show_with_first_cell(ipython)
