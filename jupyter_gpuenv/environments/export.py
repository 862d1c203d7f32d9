"""environment.yml for any catalog environment, written the way ``conda env export`` writes it.

- conda prefixes: with a conda CLI, conda itself (``conda env export -p``); without one, a
  reconstruction from ``conda-meta`` (prefix_reader.py) following conda's
  ``from_environment``: ``name``, ``channels`` (config channels, then each record's channel
  inserted in front, records sorted by name), ``dependencies`` as ``name=version=build``
  (``name=version`` with ``no_builds``) with a ``pip:`` list of packages no conda record
  owns, ``variables`` from ``conda-meta/state``, ``prefix`` last. ``from_history`` uses the
  requested specs of ``conda-meta/history`` and only the configured channels.
- venvs: ``python=X.Y.Z``, ``pip`` and every package of the venv under ``pip:``
  (``from_history``: only the ones pip marked REQUESTED).
- docker images: read inside a short-lived container — the image's conda prefix when it
  has one, else the packages of its Python — under comments naming the image and its
  digest (RepoDigests when the image has one, else its id), since a tag can move.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..docker.runs import ImageMissing, run_in_image
from ..errors import DockerUnavailable, EnvironmentNotFound, GpuEnvError
from . import prefix_reader
from .conda_config import CondaSettings, conda_cli
from .conda_history import requested_specs
from .docker_images import conda_root
from .image_pins import ImageDigest, image_digest
from .model import Environment
from .venv import read_pyvenv_cfg, venv_site_packages

PYPI_TO_CONDA = {"graphviz": "python-graphviz"}  # conda's own (short) mapping
KNOWN_SUBDIRS = {
    "noarch", "linux-64", "linux-aarch64", "linux-ppc64le", "linux-s390x", "linux-armv6l",
    "linux-armv7l", "linux-32", "osx-64", "osx-arm64", "win-64", "win-32", "win-arm64",
    "zos-z", "freebsd-64", "emscripten-wasm32", "wasi-wasm32",
}  # fmt: skip
DEFAULTS_PATHS = ("pkgs/main", "pkgs/r", "pkgs/free", "pkgs/msys2")
DEFAULTS_HOSTS = ("repo.anaconda.com", "repo.continuum.io")
CHANNEL_ALIAS = "https://conda.anaconda.org"
CLI_TIMEOUT = 300.0


class CorruptEnvironment(GpuEnvError):
    """conda itself refuses a prefix with an unreadable record; so do we."""

    status = 409


class NotExportable(GpuEnvError):
    """An environment with no image to read (an invalid docker_images entry)."""

    status = 409


def export_environment(
    env: Environment,
    no_builds: bool = False,
    from_history: bool = False,
    docker_client: Callable[[], Any] | None = None,
    timeout: float = 60.0,
) -> tuple[str, str]:
    """``(download filename, YAML text)`` for one environment."""
    filename = f"{safe_filename(env.name)}-environment.yml"
    if env.kind == "docker":
        if env.cannot_start and not env.location.get("image_id"):
            raise NotExportable(f"{env.name} cannot be exported: {env.cannot_start}")
        if docker_client is None:
            raise DockerUnavailable("Docker is not configured for this catalog")
        return filename, export_image(env, docker_client, no_builds, from_history, timeout)
    prefix = Path(env.location["prefix"])
    if not prefix.is_dir():
        raise EnvironmentNotFound(f"the environment folder {prefix} no longer exists")
    if env.kind == "conda":
        return filename, export_conda_prefix(env.name, prefix, no_builds, from_history)
    return filename, export_venv(env.name, prefix, from_history)


def export_conda_prefix(
    name: str, prefix: Path, no_builds: bool = False, from_history: bool = False
) -> str:
    """conda's own export when a CLI is installed, else the reconstruction."""
    cli = conda_cli()
    if cli is not None:
        text = conda_cli_export(cli, prefix, no_builds, from_history)
        if text is not None:
            return text
    return reconstruct_conda_export(name, prefix, no_builds, from_history)


def conda_cli_export(cli: str, prefix: Path, no_builds: bool, from_history: bool) -> str | None:
    argv = [cli, "env", "export", "-p", str(prefix)]
    argv += ["--no-builds"] if no_builds else []
    argv += ["--from-history"] if from_history else []
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.strip() else None


def reconstruct_conda_export(
    name: str,
    prefix: Path | str,
    no_builds: bool = False,
    from_history: bool = False,
    settings: CondaSettings | None = None,
) -> str:
    """What ``conda env export`` prints, rebuilt from the prefix's files."""
    data = prefix_reader.read_conda_prefix(str(prefix))
    return conda_yaml(name, data, no_builds, from_history, settings or CondaSettings.load())


def conda_yaml(
    name: str,
    data: dict[str, Any],
    no_builds: bool,
    from_history: bool,
    settings: CondaSettings,
    config_channels: list[str] | None = None,
) -> str:
    """Format the prefix_reader description of a conda prefix like conda does."""
    if data.get("corrupt"):
        raise CorruptEnvironment(
            f"the conda environment {data['prefix']} has unreadable package records "
            f"({'; '.join(data['corrupt'])}); conda cannot export it either"
        )
    channels = list(config_channels or settings.channels)
    records = sorted(data["records"], key=lambda r: r["name"])
    if from_history:
        deps: list[Any] = requested_specs(data.get("history"), (r["name"] for r in records))
    else:
        if no_builds:
            deps = [f"{r['name']}={r['version']}" for r in records]
        else:
            deps = [f"{r['name']}={r['version']}={r['build']}" for r in records]
        pip = sorted((_conda_name(p["name"]), p["version"]) for p in data.get("pip", []))
        if pip:
            deps.append({"pip": [f"{n}=={v}" for n, v in pip]})
        for record in records:
            channel = canonical_channel(record["channel"], record["url"], settings)
            if channel not in channels:
                channels.insert(0, channel)
    return dump_environment_yml(name, channels, deps, data.get("env_vars") or {}, data["prefix"])


def export_venv(name: str, prefix: Path, from_history: bool = False) -> str:
    """A venv as environment.yml: its Python pinned, its packages under ``pip:``."""
    cfg = read_pyvenv_cfg(prefix)
    python_version = cfg.get("version_info") or cfg.get("version")
    if not python_version:
        raise EnvironmentNotFound(f"{prefix}/pyvenv.cfg names no Python version")
    site = venv_site_packages(prefix)
    packages = prefix_reader.read_python_packages([str(site)]) if site.is_dir() else []
    return pip_yaml(name, python_version, packages, from_history, CondaSettings.load().channels)


def pip_yaml(
    name: str,
    python_version: str,
    packages: Iterable[dict[str, Any]],
    from_history: bool,
    channels: list[str],
    prefix: str | None = None,
) -> str:
    chosen = [p for p in packages if p.get("requested") or not from_history]
    pip = sorted(
        (_conda_name(p["name"]), p["version"]) for p in chosen if _conda_name(p["name"]) != "pip"
    )
    version = ".".join(python_version.split(".")[:2]) if from_history else python_version
    deps: list[Any] = [f"python={version}", "pip"]
    if pip:
        deps.append({"pip": [f"{n}=={v}" for n, v in pip]})
    return dump_environment_yml(name, list(channels), deps, {}, prefix)


def export_image(
    env: Environment,
    docker_client: Callable[[], Any],
    no_builds: bool,
    from_history: bool,
    timeout: float,
) -> str:
    """Read the image from inside (a throw-away container) and format it."""
    client = docker_client()
    image = env.location.get("image_id") or env.location["image"]
    conda_env = env.location.get("conda_env")
    python = env.python_executable or "python3"
    if conda_env and python.endswith("/bin/python"):
        candidates = [posixpath.dirname(posixpath.dirname(python))]
    else:
        candidates = [conda_root()]
    argv = [python, "-c", prefix_reader.source(), *candidates]
    try:
        run = run_in_image(client, image, argv, "export", timeout)
    except ImageMissing as exc:
        reference = env.location["image"]
        raise ImageMissing(f"image {reference} ({image}) is no longer present locally") from exc
    data = prefix_reader.parse_output(run.stdout)
    if data is None:
        reason = "timed out" if run.timed_out else (run.stderr.strip()[-500:] or "no output")
        raise GpuEnvError(f"reading the image {env.location['image']} failed: {reason}")
    settings = CondaSettings.load()
    if data["kind"] == "conda":
        channels = _channels_from_condarcs(data.get("condarc") or []) or settings.channels
        text = conda_yaml(env.name, data, no_builds, from_history, settings, channels)
    else:
        text = pip_yaml(
            env.name, data["python_version"], data["packages"], from_history, settings.channels
        )
    reference = env.location["image"]
    return image_header(reference, image_digest(client, image, reference)) + text


def image_header(reference: str, digest: ImageDigest | None) -> str:
    """YAML comments naming the image and what pins it (conda ignores them)."""
    lines = [f"# image: {reference}"]
    if digest is not None:
        lines.append(f"# image digest: {digest.describe()}")
    return "\n".join(lines) + "\n"


def canonical_channel(channel: str, url: str = "", settings: CondaSettings | None = None) -> str:
    """A record's channel as conda names it: ``conda-forge``, ``pytorch``, ``defaults``, a URL."""
    text = channel or (url.rsplit("/", 1)[0] if url else "")
    if not text:
        return "<unknown>"
    alias = CHANNEL_ALIAS
    configured_alias = getattr(settings, "channel_alias", None) if settings is not None else None
    if configured_alias:
        alias = str(configured_alias).rstrip("/")
    if "://" not in text:
        name = _strip_subdir(text.strip("/"))
        return "defaults" if name in DEFAULTS_PATHS or name == "defaults" else name
    parts = urlsplit(text)
    path = _strip_subdir(re.sub(r"^/t/[^/]+", "", parts.path).strip("/"))
    alias_parts = urlsplit(alias)
    if parts.netloc == alias_parts.netloc:
        alias_path = alias_parts.path.strip("/")
        return path[len(alias_path) :].strip("/") if alias_path else path
    if parts.netloc in DEFAULTS_HOSTS and path in DEFAULTS_PATHS:
        return "defaults"
    return f"{parts.scheme}://{parts.netloc}/{path}".rstrip("/")


def dump_environment_yml(
    name: str,
    channels: list[str],
    dependencies: list[Any],
    variables: dict[str, str],
    prefix: str | None,
) -> str:
    """Key order and indentation of conda's ``yaml_safe_dump`` (mapping 2, sequence 4/2)."""
    data: dict[str, Any] = {"name": name}
    if channels:
        data["channels"] = channels
    if dependencies:
        data["dependencies"] = dependencies
    if variables:
        data["variables"] = variables
    if prefix:
        data["prefix"] = prefix
    text = yaml.dump(
        data, Dumper=_CondaDumper, default_flow_style=False, sort_keys=False, allow_unicode=True
    )
    return text.rstrip() + "\n"


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "environment"


class _CondaDumper(yaml.SafeDumper):
    """Indents block sequences under their key, as ruamel's indent(offset=2) does."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _conda_name(pypi_name: str) -> str:
    norm = pypi_name.replace(".", "-").replace("_", "-").lower()
    return PYPI_TO_CONDA.get(norm, norm)


def _strip_subdir(path: str) -> str:
    head, _, last = path.rpartition("/")
    return head if last in KNOWN_SUBDIRS and head else path


def _channels_from_condarcs(texts: list[str]) -> list[str]:
    channels: list[str] = []
    for text in texts:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        values = data.get("channels") if isinstance(data, dict) else None
        if isinstance(values, list):
            channels = [*map(str, values), *(c for c in channels if c not in values)]
    return channels
