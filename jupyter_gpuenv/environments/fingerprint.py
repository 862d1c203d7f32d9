"""What an environment *contains*, as one hash that does not depend on where it lives.

Two environments with the same fingerprint run a notebook the same way, whatever their
name, path or machine: a Docker image is its image id; a conda prefix is the name, version
and build of every package record in ``conda-meta`` (plus the Python packages pip put
there); a venv is its Python version and the name and version of every installed
distribution. Paths, mtimes and channels' URLs stay out, so the same environment
recreated elsewhere hashes the same.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from . import prefix_reader
from .model import Environment
from .venv import read_pyvenv_cfg, venv_site_packages

_cache: dict[str, tuple[str, str | None]] = {}
_cache_lock = threading.Lock()
CACHE_LIMIT = 512


def environment_fingerprint(env: Environment) -> str | None:
    """The fingerprint of ``env``; None when its content cannot be read."""
    if env.kind == "docker":
        image_id = env.location.get("image_id")
        return str(image_id) if image_id else None
    prefix = env.location.get("prefix")
    if not prefix:
        return None
    path = Path(str(prefix))
    watched = path / "conda-meta" if env.kind == "conda" else venv_site_packages(path)
    stamp = _stamp(path, watched)
    key = f"{env.kind}:{path}"
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    value = conda_fingerprint(path) if env.kind == "conda" else venv_fingerprint(path)
    with _cache_lock:
        if len(_cache) >= CACHE_LIMIT:
            _cache.clear()
        _cache[key] = (stamp, value)
    return value


def conda_fingerprint(prefix: Path) -> str | None:
    """sha256 over the sorted ``name=version=build`` of every record (and pip's packages)."""
    try:
        data = prefix_reader.read_conda_prefix(str(prefix))
    except OSError:
        return None
    if not data["records"]:
        return None
    lines = sorted(f"conda:{r['name']}={r['version']}={r['build']}" for r in data["records"])
    lines += sorted(f"pip:{_norm(p['name'])}=={p['version']}" for p in data.get("pip") or [])
    return _digest(lines)


def venv_fingerprint(prefix: Path) -> str | None:
    """sha256 over the venv's Python version and its sorted ``name==version`` list."""
    cfg = read_pyvenv_cfg(prefix)
    python = cfg.get("version_info") or cfg.get("version")
    site = venv_site_packages(prefix)
    if not python or not site.is_dir():
        return None
    packages = prefix_reader.read_python_packages([str(site)])
    lines = [f"python={python}"]
    lines += sorted(f"pip:{_norm(p['name'])}=={p['version']}" for p in packages)
    return _digest(lines)


def _digest(lines: list[str]) -> str:
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _norm(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def _stamp(prefix: Path, watched: Path) -> str:
    """Changes whenever packages are added or removed (the folder's mtime)."""
    parts = []
    for path in (prefix, watched):
        try:
            parts.append(str(os.stat(path).st_mtime_ns))
        except OSError:
            parts.append("-")
    return "|".join(parts)
