"""jupyter-gpuenv: GPU deep-learning environments as first-class Jupyter kernels."""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "load_ipython_extension"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import GpuEnvExtension

    return [{"module": "jupyter_gpuenv", "app": GpuEnvExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-gpuenv"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_gpuenv`` registers the ``%gpuinfo`` magic."""
    from .kernel.gpuinfo import load_ipython_extension as _load

    _load(ipython)
