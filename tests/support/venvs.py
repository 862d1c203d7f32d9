"""Real virtual environments (``python -m venv``) for the venv source and kernels."""

from __future__ import annotations

import os
import sys
import venv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .dist_info import write_dist_info
from .fake_torch import TorchSpec, write_fake_torch


def make_venv(
    path: str | os.PathLike[str],
    ipykernel: bool = True,
    pip_packages: Iterable[tuple[str, str]] = (),
    torch: Mapping[str, Any] | None = None,
) -> Path:
    """Create a venv at ``path`` and return it.

    With ``ipykernel`` the venv sees the host's site-packages (``--system-site-packages``),
    which is where ipykernel is installed, so no download is needed; without it the venv is
    isolated and ipykernel cannot be imported. ``pip_packages`` adds ``dist-info`` records
    (INSTALLER=pip) and ``torch`` the fake torch of fake_torch.py, installed by pip.
    """
    prefix = Path(path).absolute()
    builder = venv.EnvBuilder(system_site_packages=ipykernel, symlinks=True, with_pip=False)
    builder.create(prefix)
    site_packages = (
        prefix
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )
    for name, version in pip_packages:
        write_dist_info(site_packages, name, version, "pip")
    if torch is not None:
        write_fake_torch(site_packages, TorchSpec.from_dict(dict(torch), default_installer="pip"))
    return prefix
