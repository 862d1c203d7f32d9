"""Remove a conda environment the user owns — never a base install, never someone else's.

The checks come first and touch nothing: a conda prefix (``conda-meta/``), not a conda
install's root (base, ``condabin/``, conda's own package inside), not the environment
running this process, owned by this user, and under the folders the admin allows
(``c.GpuEnv.environment_create_dirs``). Then the prefix is renamed to a hidden sibling in
one step — gone from every listing at once — and deleted.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ...errors import GpuEnvError
from ..conda_config import CondaSettings
from . import environments_txt
from .errors import CreateRefused
from .rattler_engine import staging_path
from .target import check_allowed


class NotRemovable(GpuEnvError):
    """Not an environment this user may remove (409): the message says why."""

    status = 409


def check_removable(config: Any, prefix: Path, name: str | None = None) -> None:
    """Raise why ``prefix`` must not be removed; return when it may."""
    prefix = Path(os.path.abspath(prefix))
    if not (prefix / "conda-meta").is_dir():
        raise NotRemovable(f"{prefix} is not a conda environment (no conda-meta/); not removed")
    if name == "base" or is_base_install(prefix):
        raise NotRemovable(f"{prefix} is a conda installation's base environment; never removed")
    if _same(prefix, Path(sys.prefix)):
        raise NotRemovable(f"{prefix} is the environment this server runs in; not removed")
    owner = os.stat(prefix).st_uid
    if owner != os.getuid():
        raise CreateRefused(f"{prefix} belongs to another user (uid {owner}); not removed")
    check_allowed(config, prefix, "remove")


def is_base_install(prefix: Path) -> bool:
    """A conda root: conda's root prefix or an install root, ``condabin/``, or conda itself
    (or mamba/micromamba) installed in it."""
    settings = CondaSettings.load()
    roots = [settings.root_prefix, *settings.install_roots]
    if any(root is not None and _same(prefix, root) for root in roots):
        return True
    if (prefix / "condabin").is_dir():
        return True
    meta = prefix / "conda-meta"
    return any(meta.glob("conda-[0-9]*.json")) or any(meta.glob("mamba-[0-9]*.json"))


def remove_prefix(config: Any, prefix: Path, name: str | None = None) -> None:
    """Check, then remove ``prefix`` (renamed away first, so no half-removed environment
    is ever listed)."""
    prefix = Path(os.path.abspath(prefix))
    check_removable(config, prefix, name)
    doomed = staging_path(prefix)
    try:
        os.rename(prefix, doomed)
    except OSError as err:
        raise NotRemovable(f"cannot remove {prefix}: {err.strerror or err}") from None
    shutil.rmtree(doomed, ignore_errors=True)
    environments_txt.forget(prefix)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
