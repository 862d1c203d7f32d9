"""The per-user GPU grant a JupyterHub spawner puts in the single-user server's environment.

``c.GpuEnv.user_gpus_env`` (default ``GPUENV_GPUS``) wins; ``NVIDIA_VISIBLE_DEVICES`` is
the fallback because a container-based spawner sets it for the NVIDIA runtime anyway.
With neither set, nothing is restricted (a single-user machine).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..gpu_set import GpuSet

DEFAULT_USER_GPUS_ENV = "GPUENV_GPUS"
NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"


def read_user_grant(
    env_name: str | None = DEFAULT_USER_GPUS_ENV, environ: Mapping[str, str] | None = None
) -> GpuSet:
    """The GPUs of this server's user; ``source`` names the variable (None: unrestricted)."""
    env = os.environ if environ is None else environ
    for name in (env_name, NVIDIA_VISIBLE_DEVICES):
        if name and name in env:
            return GpuSet.parse(env[name], source=name)
    return GpuSet.all()
