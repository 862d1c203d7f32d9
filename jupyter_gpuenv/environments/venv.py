"""Virtual environments (venv, virtualenv, uv): a prefix with ``pyvenv.cfg`` and ``bin/python``.

Prefixes that also have ``conda-meta/`` belong to the conda source, not to this one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .candidates import (
    Candidate,
    mtimes_identity,
    prefix_candidate,
    prefixes_in,
    unique_prefixes,
)


def is_venv_prefix(path: Path) -> bool:
    return os.path.isfile(path / "pyvenv.cfg") and not os.path.isdir(path / "conda-meta")


def venv_prefixes(venv_dirs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Subfolders of ``venv_dirs`` that are venvs; an entry that is itself a venv counts too."""
    return unique_prefixes(prefixes_in(venv_dirs, is_venv_prefix))


def venv_name(prefix: Path) -> str:
    """The folder's name; for a hidden project venv (``proj/.venv``) the project's name."""
    if prefix.name.startswith(".") and prefix.parent.name:
        return prefix.parent.name
    return prefix.name


def read_pyvenv_cfg(prefix: Path) -> dict[str, str]:
    """``key = value`` lines of pyvenv.cfg (venv, virtualenv and uv all write this shape)."""
    values: dict[str, str] = {}
    try:
        text = (prefix / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


def venv_site_packages(prefix: Path) -> Path:
    """The venv's own site-packages (from pyvenv.cfg's version, else by looking)."""
    cfg = read_pyvenv_cfg(prefix)
    version = cfg.get("version_info") or cfg.get("version") or ""
    major_minor = ".".join(version.split(".")[:2])
    if major_minor:
        path = prefix / "lib" / f"python{major_minor}" / "site-packages"
        if os.path.isdir(path):
            return path
    for candidate in sorted((prefix / "lib").glob("python3.*/site-packages")):
        return candidate
    return prefix / "lib" / "site-packages"


def venv_candidate(prefix: Path) -> Candidate:
    """Describe one venv without running its interpreter."""
    python = prefix / "bin" / "python"
    problems: list[str] = []
    if not os.path.exists(python):
        target = os.readlink(python) if os.path.islink(python) else None
        reason = (
            f"it points to {target}, which does not exist or the server's user cannot reach"
            if target
            else "it is missing"
        )
        problems.append(f"the venv's interpreter {python} cannot run ({reason}); recreate the venv")
    return prefix_candidate("venv", venv_name(prefix), prefix, venv_identity(prefix), problems)


def venv_identity(prefix: Path) -> str:
    """pyvenv.cfg changes when the venv is recreated, site-packages when pip changes it."""
    return mtimes_identity("venv", prefix, (prefix / "pyvenv.cfg", venv_site_packages(prefix)))
