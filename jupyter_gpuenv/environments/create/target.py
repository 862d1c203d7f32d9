"""Where a new environment goes, and whether this user may create or remove one there.

``-n NAME`` follows conda: the first writable folder of the envs dirs the catalog lists
(``c.GpuEnv.conda_envs_dirs``, else conda's own ``envs_dirs``), so the new environment is
listed and gets a kernel. ``-p PREFIX`` is taken as given. Either way the admin's
``c.GpuEnv.environment_create_dirs`` decides what is allowed: by default anywhere the
user can write, on a JupyterHub user's server only under their home; a list narrows it to
those folders; an empty list turns creating and removing off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..conda_config import CondaSettings
from .errors import CreateRefused, EnvironmentExists
from .spec import InvalidEnvironmentFile


def allowed_roots(config: Any, home: Path | None = None) -> list[Path] | None:
    """Folders creation is limited to; None means "anywhere the user can write"."""
    home = home or Path(os.path.expanduser("~"))
    dirs = config.environment_create_dirs
    if dirs is None:
        return [home] if config.hub_user else None
    if not dirs:
        raise CreateRefused(
            "creating and removing environments is turned off on this server "
            "(c.GpuEnv.environment_create_dirs = [])"
        )
    return [_expand(d, home) for d in dirs]


def envs_dirs(config: Any) -> list[Path]:
    """The folders ``-n NAME`` may create in, in conda's order of preference."""
    configured = config.conda_envs_dirs
    if configured is not None:
        return [_expand(d) for d in configured]
    return list(CondaSettings.load().envs_dirs)


def new_prefix(config: Any, name: str | None, prefix: str | None) -> Path:
    """The prefix to create, checked: allowed, free, and its parent writable."""
    if prefix:
        target = _expand(prefix)
    elif name:
        target = _in_first_writable(config, name)
    else:
        raise InvalidEnvironmentFile(
            "say where to create the environment: a `name` in the file, -n NAME or -p PREFIX"
        )
    check_allowed(config, target, "create")
    if os.path.lexists(target):
        if (target / "conda-meta").is_dir():
            raise EnvironmentExists(
                f"{target} already exists (an environment); choose another name, or remove "
                f"it first with `jupyter gpuenv remove {target}`"
            )
        raise EnvironmentExists(
            f"{target} already exists (a file or folder); choose another name or prefix"
        )
    return target


def check_allowed(config: Any, target: Path, action: str) -> None:
    """:class:`CreateRefused` unless ``target`` lies under an allowed folder."""
    roots = allowed_roots(config)
    if roots is None:
        return
    real = Path(os.path.realpath(target))
    if not any(_under(real, Path(os.path.realpath(root))) for root in roots):
        listed = ", ".join(str(r) for r in roots)
        raise CreateRefused(
            f"cannot {action} {target}: environments may only be {action}d under {listed} "
            "(c.GpuEnv.environment_create_dirs)"
        )


def _in_first_writable(config: Any, name: str) -> Path:
    if "/" in name or name in ("", ".", "..", "base"):
        raise InvalidEnvironmentFile(f"{name!r} cannot name a new environment")
    candidates = envs_dirs(config)
    roots = allowed_roots(config)
    usable = [d for d in candidates if roots is None or any(_under(d, r) for r in roots)]
    for folder in usable:
        if os.path.lexists(folder / name):
            # conda refuses a name that is taken in any of its envs dirs, not only the first
            return folder / name
    for folder in usable:
        if _writable(folder):
            return folder / name
    tried = ", ".join(str(d) for d in usable) or "none configured"
    raise CreateRefused(
        f"no writable folder for a new environment named {name!r} (tried: {tried}); "
        "give -p PREFIX or set c.GpuEnv.conda_envs_dirs"
    )


def _writable(folder: Path) -> bool:
    """Writable now, or creatable: the nearest existing parent is writable."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _expand(value: str | os.PathLike[str], home: Path | None = None) -> Path:
    text = os.path.expandvars(str(value))
    if home is not None and (text == "~" or text.startswith("~/")):
        text = str(home) + text[1:]
    return Path(os.path.abspath(os.path.expanduser(text)))
