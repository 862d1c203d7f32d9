"""Real virtual environments (``python -m venv``) for the venv source and kernels."""

from __future__ import annotations

import os
import sys
import venv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .conda_prefix import host_site_packages
from .dist_info import write_dist_info
from .fake_torch import TorchSpec, write_fake_torch

SITE_PACKAGES = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def make_venv(
    path: str | os.PathLike[str],
    ipykernel: bool = True,
    pip_packages: Iterable[tuple[str, str]] = (),
    torch: Mapping[str, Any] | None = None,
) -> Path:
    """Create a venv at ``path`` and return it.

    With ``ipykernel`` a .pth file puts the running interpreter's site-packages (where
    ipykernel is installed; a venv's own when the tests run in one, which
    ``--system-site-packages`` would miss) after the venv's, so nothing is downloaded;
    without it the venv is isolated and ipykernel cannot be imported. ``pip_packages``
    adds ``dist-info`` records (INSTALLER=pip) and ``torch`` the fake torch of
    fake_torch.py, installed by pip.
    """
    prefix = Path(path).absolute()
    venv.EnvBuilder(symlinks=True, with_pip=False).create(prefix)
    site_packages = prefix / SITE_PACKAGES
    if ipykernel:
        (site_packages / "_gpuenv_test_host_site.pth").write_text(
            "".join(f"{folder}\n" for folder in host_site_packages()), encoding="utf-8"
        )
    for name, version in pip_packages:
        write_dist_info(site_packages, name, version, "pip")
    if torch is not None:
        write_fake_torch(site_packages, TorchSpec.from_dict(dict(torch), default_installer="pip"))
    return prefix
