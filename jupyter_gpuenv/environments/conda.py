"""Conda environments: find prefixes (stat only) and list ``conda env list`` when a CLI exists.

A folder is a conda environment when it has ``conda-meta/`` — even if it also carries a
``pyvenv.cfg`` (conda's python packages can ship one). The root prefix is the ``base``
environment.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from .candidates import (
    Candidate,
    mtimes_identity,
    prefix_candidate,
    prefixes_in,
    unique_prefixes,
)
from .conda_config import CondaSettings

CONDA_ENV_LIST_TIMEOUT = 60.0
PIXI_ENVS = Path(".pixi") / "envs"  # where pixi installs a project's environments


def is_conda_prefix(path: Path) -> bool:
    return os.path.isdir(path / "conda-meta")


def conda_prefixes(
    envs_dirs: Iterable[str | os.PathLike[str]],
    settings: CondaSettings,
    extra_prefixes: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Every conda prefix: base, subfolders of ``envs_dirs``, environments.txt, the usual
    install roots and their ``envs/``, CLI extras.

    An entry of ``envs_dirs`` that is itself a prefix counts too. Paths are made absolute
    and deduplicated by their real path, first occurrence wins.
    """
    found: list[Path] = []
    if settings.root_prefix is not None:
        found.append(settings.root_prefix)
    found += prefixes_in(envs_dirs, is_conda_prefix)
    found += [p for p in settings.listed_prefixes if is_conda_prefix(p)]
    for root in settings.install_roots:
        found += prefixes_in([root, root / "envs"], is_conda_prefix)
    found += [Path(p) for p in extra_prefixes if is_conda_prefix(Path(p))]
    return unique_prefixes(found)


def pixi_prefixes(project_dirs: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """(project, prefix) of each pixi project environment, ``<project>/.pixi/envs/<env>``,
    for every entry of ``project_dirs`` that is a pixi project or holds projects."""
    found: list[tuple[Path, Path]] = []
    for folder in project_dirs:
        base = Path(folder).expanduser().absolute()
        if is_pixi_project(base):
            projects = [base]
        else:
            try:
                projects = sorted(p for p in base.iterdir() if is_pixi_project(p))
            except OSError:
                continue
        for project in projects:
            found += [(project, p) for p in prefixes_in([project / PIXI_ENVS], is_conda_prefix)]
    return found


def is_pixi_project(path: Path) -> bool:
    """A folder pixi has installed environments for (its manifest beside them)."""
    has_manifest = (path / "pixi.toml").is_file() or (path / "pyproject.toml").is_file()
    return has_manifest and (path / PIXI_ENVS).is_dir()


def pixi_candidate(project: Path, prefix: Path, settings: CondaSettings) -> Candidate:
    """A pixi environment is a conda prefix; named after its project (``proj``, or
    ``proj-cuda`` for an environment other than ``default``)."""
    candidate = conda_candidate(prefix, settings)
    env = prefix.name
    candidate.name = project.name if env == "default" else f"{project.name}-{env}"
    candidate.location["pixi_project"] = str(project)
    return candidate


def conda_candidate(prefix: Path, settings: CondaSettings) -> Candidate:
    """Describe one prefix without running anything in it."""
    prefix = prefix.absolute()
    name = "base" if settings.root_prefix and _same(prefix, settings.root_prefix) else prefix.name
    python = prefix / "bin" / "python"
    problems: list[str] = []
    if os.path.islink(python) and not os.path.exists(python):
        problems.append(
            f"the environment's interpreter {python} points to {os.readlink(python)}, which "
            "does not exist or the server's user cannot reach"
        )
    elif not os.path.exists(python):
        problems.append(
            f"no Python interpreter in this environment ({python} is missing); "
            f"install one with `conda install -p {prefix} python ipykernel`"
        )
    return prefix_candidate("conda", name, prefix, conda_identity(prefix), problems)


def conda_identity(prefix: Path) -> str:
    """What changes when conda or pip changes the environment: a few mtimes.

    conda adds/removes ``conda-meta/*.json`` records (the folder's mtime) and appends to
    ``conda-meta/history``; pip adds/removes ``*.dist-info`` folders in site-packages.
    """
    meta = prefix / "conda-meta"
    return mtimes_identity("conda", prefix, (meta, meta / "history", site_packages(prefix)))


def site_packages(prefix: Path) -> Path:
    """``lib/pythonX.Y/site-packages``, found from the ``bin/python`` link (no listing)."""
    try:
        target = os.readlink(prefix / "bin" / "python")
    except OSError:
        target = ""
    name = os.path.basename(target)
    if name.startswith("python3."):
        return prefix / "lib" / name / "site-packages"
    for candidate in sorted((prefix / "lib").glob("python3.*/site-packages")):
        return candidate
    return prefix / "lib" / "site-packages"


def conda_env_list(cli: str, timeout: float = CONDA_ENV_LIST_TIMEOUT) -> list[Path]:
    """``conda env list --json`` prefixes; slow (conda starts up), so never on a request."""
    try:
        done = subprocess.run(
            [cli, "env", "list", "--json"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        data = json.loads(done.stdout or "{}")
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    return [Path(p) for p in data.get("envs", []) if isinstance(p, str)]


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
