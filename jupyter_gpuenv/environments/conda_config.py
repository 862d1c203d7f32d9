"""Where conda keeps environments and which channels it uses, read from conda's own config.

conda is never imported or run here: admins may have no conda CLI on the server's PATH
(or a different one), and a listing must not pay for conda's start-up. We read the same
files conda reads — ``.condarc`` files, ``~/.conda/environments.txt`` — and the
variables its activation sets (``CONDA_EXE``, ``CONDA_PREFIX``, ``CONDA_ENVS_PATH``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT_PREFIX_VARS = ("CONDA_ROOT", "MAMBA_ROOT_PREFIX")
DEFAULT_CHANNELS = ("defaults",)
# Where the installers put conda when nothing says otherwise (a server started by systemd
# or a Hub spawner has no conda variables and often no conda on PATH).
HOME_INSTALL_ROOTS = ("miniconda3", "miniforge3", "anaconda3", "mambaforge")
SYSTEM_INSTALL_ROOTS = ("/opt/conda", "/opt/miniconda3")


def condarc_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The .condarc search path, lowest precedence first (conda's SEARCH_PATH order)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    candidates: list[Path] = [
        Path("/etc/conda/.condarc"),
        Path("/etc/conda/condarc"),
        Path("/etc/conda/condarc.d"),
        Path("/var/lib/conda/.condarc"),
        Path("/var/lib/conda/condarc"),
        Path("/var/lib/conda/condarc.d"),
    ]
    root = root_prefix(env)
    if root:
        candidates += [root / ".condarc", root / "condarc", root / "condarc.d"]
    candidates += [
        xdg / "conda" / ".condarc",
        xdg / "conda" / "condarc",
        xdg / "conda" / "condarc.d",
        home / ".config" / "conda" / ".condarc",
        home / ".config" / "conda" / "condarc",
        home / ".config" / "conda" / "condarc.d",
        home / ".conda" / ".condarc",
        home / ".conda" / "condarc",
        home / ".conda" / "condarc.d",
        home / ".condarc",
    ]
    if env.get("CONDA_PREFIX"):
        prefix = Path(env["CONDA_PREFIX"])
        candidates += [prefix / ".condarc", prefix / "condarc", prefix / "condarc.d"]
    if env.get("CONDARC"):
        candidates.append(Path(env["CONDARC"]))
    files: list[Path] = []
    seen: set[Path] = set()
    for path in candidates:
        if os.path.isdir(path):
            try:
                found = sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml"))
            except OSError:
                found = []
        else:
            found = [path] if os.path.isfile(path) else []
        for item in found:
            if item not in seen:
                seen.add(item)
                files.append(item)
    return files


def root_prefix(environ: Mapping[str, str] | None = None) -> Path | None:
    """conda's root (base) prefix: $CONDA_ROOT, then $CONDA_EXE's prefix, then $CONDA_PREFIX's."""
    env = os.environ if environ is None else environ
    for var in ROOT_PREFIX_VARS:
        if env.get(var) and os.path.isdir(Path(env[var], "conda-meta")):
            return Path(env[var])
    exe = env.get("CONDA_EXE")
    if exe:
        # <root>/bin/conda or <root>/condabin/conda
        root = Path(exe).parent.parent
        if os.path.isdir(root / "conda-meta"):
            return root
    prefix = env.get("CONDA_PREFIX")
    if prefix:
        path = Path(prefix)
        if path.parent.name == "envs" and os.path.isdir(path.parent.parent / "conda-meta"):
            return path.parent.parent
        if os.path.isdir(path / "conda-meta"):
            return path
    return None


@dataclass
class CondaSettings:
    """The parts of conda's configuration the catalog and export need."""

    envs_dirs: list[Path] = field(default_factory=list)
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    root_prefix: Path | None = None
    listed_prefixes: list[Path] = field(default_factory=list)
    condarc_files: list[Path] = field(default_factory=list)
    channel_alias: str | None = None
    install_roots: list[Path] = field(default_factory=list)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> CondaSettings:
        """Read every .condarc, environments.txt and the conda variables (no conda run)."""
        env = os.environ if environ is None else environ
        files = condarc_paths(env)
        configs = [_read_condarc(path) for path in files]
        merged = _merge_condarcs(configs)
        aliases = [c["channel_alias"] for c in configs if isinstance(c.get("channel_alias"), str)]
        home = Path(env.get("HOME") or os.path.expanduser("~"))
        install_roots = common_install_roots(home)
        root = root_prefix(env) or (install_roots[0] if install_roots else None)
        envs_dirs: list[Path] = []
        env_var = env.get("CONDA_ENVS_PATH") or env.get("CONDA_ENVS_DIRS")
        if env_var:
            envs_dirs += [Path(p).expanduser() for p in env_var.split(os.pathsep) if p]
        envs_dirs += [Path(os.path.expandvars(str(p))).expanduser() for p in merged["envs_dirs"]]
        if root is not None:
            envs_dirs.append(root / "envs")
        envs_dirs.append(home / ".conda" / "envs")
        channels = [str(c) for c in merged["channels"]] or list(DEFAULT_CHANNELS)
        return cls(
            envs_dirs=_unique(envs_dirs),
            channels=channels,
            root_prefix=root,
            listed_prefixes=read_environments_txt(home),
            condarc_files=files,
            channel_alias=aliases[-1] if aliases else None,
            install_roots=install_roots,
        )


def common_install_roots(home: Path) -> list[Path]:
    """The usual conda install folders (``~/miniconda3``, ``/opt/conda``, ...) that exist."""
    candidates = [home / name for name in HOME_INSTALL_ROOTS]
    candidates += [Path(p) for p in SYSTEM_INSTALL_ROOTS]
    return [p for p in candidates if (p / "conda-meta").is_dir()]


def read_environments_txt(home: Path) -> list[Path]:
    """Prefixes conda recorded in ``~/.conda/environments.txt`` (one per line)."""
    path = home / ".conda" / "environments.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    return _unique(Path(line.strip()) for line in text.splitlines() if line.strip())


def conda_cli() -> str | None:
    """A conda-compatible CLI for ``conda env list``/``env export``, if one is installed."""
    exe = os.environ.get("CONDA_EXE")
    if exe and os.access(exe, os.X_OK):
        return exe
    for name in ("conda", "mamba"):
        found = shutil.which(name)
        if found:
            return found
    return None


def default_conda_envs_dirs() -> list[str]:
    """Default of ``c.GpuEnv.conda_envs_dirs``: conda's envs_dirs that exist."""
    return [str(p) for p in CondaSettings.load().envs_dirs if os.path.isdir(p)]


def _read_condarc(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _merge_condarcs(configs: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """Merge list settings like conda: a later (higher-precedence) file's items come first."""
    merged: dict[str, list[Any]] = {"envs_dirs": [], "channels": []}
    for config in configs:
        for key in merged:
            values = config.get(key) or config.get("envs_path" if key == "envs_dirs" else key)
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list):
                continue
            merged[key] = [*values, *(v for v in merged[key] if v not in values)]
    return merged


def _unique(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path not in out:
            out.append(path)
    return out
