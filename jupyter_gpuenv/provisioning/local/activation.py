"""Activate a conda env or venv for a kernel the way ``conda activate`` would, once.

``conda activate`` sets PATH, CONDA_PREFIX, CONDA_DEFAULT_ENV, CONDA_PROMPT_MODIFIER,
CONDA_SHLVL, the env's configured variables (``conda env config vars`` and
``etc/conda/env_vars.d``), then sources ``etc/conda/activate.d/*.sh``. Those scripts
often set CUDA_HOME or LD_LIBRARY_PATH, so kernels need them. Running ``conda run`` for
every kernel start is slow and needs a conda CLI; instead the scripts are sourced once in
bash and the resulting change of environment (an ``env -0`` diff) is cached by the mtimes
of ``activate.d`` and ``conda-meta`` and by the server environment it started from.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...environments.prefix_reader import activation_env_vars

SCRIPT_TIMEOUT = 30.0

_cache: dict[tuple[str, str], ActivationDelta] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class ActivationDelta:
    """Variables the activate.d scripts set (``set``) or removed (``unset``)."""

    set: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    problem: str | None = None


def activated_env(
    kind: str,
    prefix: str,
    base_env: dict[str, str],
    scripts_env: dict[str, str] | None = None,
    log: Any = None,
) -> dict[str, str]:
    """``base_env`` as it looks after activating the conda env or venv at ``prefix``.

    The activate.d scripts run from ``scripts_env`` (default ``base_env``): passing the
    server's own environment there keeps the cache hit when per-kernel variables differ.
    """
    if kind == "venv":
        return venv_activation(prefix, base_env)
    env = conda_activation(prefix, base_env)
    script_start = env if scripts_env is None else conda_activation(prefix, scripts_env)
    delta = activate_scripts_delta(prefix, script_start)
    if delta.problem and log is not None:
        log.warning("Activating %s: %s", prefix, delta.problem)
    for name in delta.unset:
        env.pop(name, None)
    env.update(delta.set)
    return env


def venv_activation(prefix: str, base_env: dict[str, str]) -> dict[str, str]:
    """What ``source bin/activate`` does: VIRTUAL_ENV, PATH, no PYTHONHOME."""
    env = dict(base_env)
    old = env.get("VIRTUAL_ENV")
    path = _path_list(env)
    if old:
        path = [p for p in path if p != os.path.join(old, "bin")]
    env["PATH"] = os.pathsep.join([os.path.join(prefix, "bin")] + path)
    env["VIRTUAL_ENV"] = prefix
    env["VIRTUAL_ENV_PROMPT"] = f"({os.path.basename(prefix)}) "
    env.pop("PYTHONHOME", None)
    return env


def conda_activation(prefix: str, base_env: dict[str, str]) -> dict[str, str]:
    """The variables conda's own activator exports for a non-stacked activation.

    An env active in the server (CONDA_SHLVL >= 1) is replaced in PATH and remembered in
    CONDA_PREFIX_<n>, as ``conda activate`` does from an active shell.
    """
    env = dict(base_env)
    old_prefix = env.get("CONDA_PREFIX", "")
    try:
        old_shlvl = int(env.get("CONDA_SHLVL", "0").strip() or 0)
    except ValueError:
        old_shlvl = 0
    new_bin = os.path.join(prefix, "bin")
    path = _path_list(env)
    if old_shlvl >= 1 and old_prefix:
        old_bin = os.path.join(old_prefix, "bin")
        index = path.index(old_bin) if old_bin in path else 0
        path = [p for p in path if p != old_bin]
        path.insert(min(index, len(path)), new_bin)
        env[f"CONDA_PREFIX_{old_shlvl}"] = old_prefix
    else:
        path.insert(0, new_bin)
    default_env = conda_default_env(prefix)
    env.update(
        {
            "PATH": os.pathsep.join(path),
            "CONDA_PREFIX": prefix,
            "CONDA_SHLVL": str(old_shlvl + 1),
            "CONDA_DEFAULT_ENV": default_env,
            "CONDA_PROMPT_MODIFIER": f"({default_env}) ",
        }
    )
    to_set, to_unset = activation_env_vars(prefix)
    env.update(to_set)
    for name in to_unset:
        env.pop(name, None)
    env.pop("PYTHONHOME", None)
    return env


def conda_default_env(prefix: str) -> str:
    """Conda's short name: "base" for a root install, the folder name under envs/."""
    root = Path(prefix)
    if (root / "condabin").is_dir() or (root / "conda-meta" / "conda.lock").exists():
        return "base"
    if root.parent.name == "envs":
        return root.name
    return prefix


def activate_scripts(prefix: str) -> list[Path]:
    """The POSIX activation scripts conda would source, in conda's order."""
    folder = Path(prefix, "etc", "conda", "activate.d")
    return sorted(folder.glob("*.sh")) if folder.is_dir() else []


def activate_scripts_delta(prefix: str, env: dict[str, str]) -> ActivationDelta:
    """Run the activate.d scripts once per prefix state and starting environment."""
    scripts = activate_scripts(prefix)
    if not scripts:
        return ActivationDelta()
    key = (prefix, _state_key(prefix, scripts, env))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    delta = _source_scripts(scripts, env)
    with _cache_lock:
        _cache[key] = delta
    return delta


def _source_scripts(scripts: list[Path], env: dict[str, str]) -> ActivationDelta:
    # Sourced in one bash, as conda's shell hook does; a failing script does not stop
    # the others. The environment is printed NUL-separated after the last one.
    sources = "".join(f'. "$GPUENV_SCRIPT_{i}" || true\n' for i in range(len(scripts)))
    program = sources + "env -0\n"
    run_env = dict(env)
    for i, script in enumerate(scripts):
        run_env[f"GPUENV_SCRIPT_{i}"] = str(script)
    try:
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", program],
            env=run_env,
            capture_output=True,
            timeout=SCRIPT_TIMEOUT,
            cwd=os.path.dirname(str(scripts[0])),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return ActivationDelta(problem=f"activate.d scripts could not run: {err}")
    after = _parse_env0(result.stdout)
    if not after:
        tail = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return ActivationDelta(problem="activate.d scripts exited early: " + " / ".join(tail))
    ignored = {"_", "SHLVL", "PWD", "OLDPWD"} | {f"GPUENV_SCRIPT_{i}" for i in range(len(scripts))}
    changed = {k: v for k, v in after.items() if k not in ignored and env.get(k) != v}
    removed = tuple(sorted(k for k in env if k not in after and k not in ignored))
    return ActivationDelta(set=changed, unset=removed)


def _state_key(prefix: str, scripts: list[Path], env: dict[str, str]) -> str:
    parts: list[Any] = []
    for path in [Path(prefix, "etc", "conda", "activate.d"), Path(prefix, "conda-meta")]:
        parts.append((str(path), _mtime(path)))
    parts.extend((str(s), _mtime(s)) for s in scripts)
    parts.append(sorted(env.items()))
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _parse_env0(raw: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _path_list(env: dict[str, str]) -> list[str]:
    return [p for p in env.get("PATH", "").split(os.pathsep) if p]
