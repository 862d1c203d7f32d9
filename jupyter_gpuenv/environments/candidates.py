"""What discovery hands to the catalog: an environment found, not yet probed.

Discovery (conda.py, venv.py, docker_images.py) only looks at the file system or the
Docker image list; it never runs code inside an environment. Its output carries the
``identity`` that says whether a cached probe result still holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import Environment, EnvironmentKind, environment_id, kernel_name_for
from .probe_result import ProbeResult

KIND_ORDER = {"conda": 0, "venv": 1, "docker": 2}


@dataclass
class Candidate:
    """One environment found by a source.

    ``identity`` changes whenever the content the probe reads may have changed (conda-meta
    or site-packages mtimes, the image id); ``None`` means "cannot be probed" and
    ``problems`` says why. ``cannot_start`` keeps its kernelspec out (an invalid entry).
    """

    kind: EnvironmentKind
    name: str
    discriminator: str
    location: dict[str, Any]
    identity: str | None
    python: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    display_name: str | None = None
    cannot_start: str | None = None

    @property
    def id(self) -> str:
        return environment_id(self.kind, self.name, self.discriminator)

    @property
    def fingerprint(self) -> str:
        """Everything that changes the listed entry: identity, problems, settings, location."""
        return "\x1f".join(
            [
                self.identity or "",
                *self.problems,
                self.display_name or "",
                repr(sorted(self.settings.items(), key=lambda kv: kv[0])),
                repr(sorted(self.location.items(), key=lambda kv: kv[0])),
            ]
        )

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (KIND_ORDER[self.kind], self.name.lower(), self.discriminator)


def prefix_candidate(
    kind: EnvironmentKind, name: str, prefix: Path, identity: str, problems: list[str]
) -> Candidate:
    """A conda prefix or venv: known by its path, its kernel runs its ``bin/python``."""
    python = prefix / "bin" / "python"
    return Candidate(
        kind=kind,
        name=name,
        discriminator=str(prefix),
        location={"prefix": str(prefix)},
        identity=identity,
        python=str(python) if os.path.exists(python) else None,
        settings={"prefix": str(prefix)},
        problems=problems,
    )


def mtimes_identity(kind: str, prefix: Path, paths: Iterable[Path]) -> str:
    """``kind:prefix|mtime|...``: changes whenever one of ``paths`` is written ("-": absent)."""
    parts = [str(prefix)]
    for path in paths:
        try:
            parts.append(str(os.stat(path).st_mtime_ns))
        except OSError:
            parts.append("-")
    return f"{kind}:" + "|".join(parts)


def display_name_for(
    name: str,
    kind: str,
    python_version: str | None,
    torch_version: str | None,
    cuda_version: str | None,
    hip_version: str | None = None,
) -> str:
    """The launcher label: ``vision (conda) · PyTorch 2.9 · CUDA 12.1``.

    Without torch the Python version is shown instead; with nothing probed only the name.
    """
    parts = [f"{name} ({kind})"]
    if torch_version:
        parts.append(f"PyTorch {_major_minor(torch_version)}")
        if cuda_version:
            parts.append(f"CUDA {cuda_version}")
        elif hip_version:
            parts.append(f"ROCm {_major_minor(hip_version)}")
        else:
            parts.append("CPU")
    elif python_version:
        parts.append(f"Python {_major_minor(python_version)}")
    return " · ".join(parts)


def build_environment(candidate: Candidate, probe: ProbeResult | None) -> Environment:
    """Combine what discovery found with what the probe reported."""
    probe = probe or ProbeResult()
    problems = list(candidate.problems) + list(probe.problems)
    if probe.python_version and not probe.ipykernel and candidate.kind != "docker":
        # Docker kernels get ipykernel from a derived layer; local envs must have it.
        prefix = candidate.location.get("prefix", "")
        problems.append(
            "ipykernel is not installed in this environment, so no kernel can start in it; "
            f"install it with `{prefix}/bin/python -m pip install ipykernel`"
            + (f" or `conda install -p {prefix} ipykernel`" if candidate.kind == "conda" else "")
        )
    display_name = candidate.display_name or display_name_for(
        candidate.name,
        candidate.kind,
        probe.python_version,
        probe.torch_version,
        probe.cuda_version,
        probe.hip_version,
    )
    env_id = candidate.id
    return Environment(
        id=env_id,
        name=candidate.name,
        kind=candidate.kind,
        display_name=display_name,
        kernel_name=kernel_name_for(env_id),
        location=dict(candidate.location),
        python_version=probe.python_version,
        python_executable=probe.python_executable or candidate.python,
        torch_version=probe.torch_version,
        cuda_version=probe.cuda_version,
        cudnn_version=probe.cudnn_version,
        torch_arch_list=list(probe.torch_arch_list),
        ipykernel=probe.ipykernel,
        ipykernel_version=probe.ipykernel_version if probe.ipykernel else None,
        labels=dict(candidate.labels),
        problems=_unique(problems),
        cannot_start=candidate.cannot_start,
        settings=dict(candidate.settings),
    )


def _major_minor(version: str) -> str:
    public = version.split("+", 1)[0]
    return ".".join(public.split(".")[:2])


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# A prefix being created or removed is a hidden sibling carrying this in its name
# (environments/create/): never listed, so no half-made environment gets a kernel.
IN_PROGRESS_MARK = ".gpuenv-creating-"


def prefixes_in(
    dirs: Iterable[str | os.PathLike[str]], is_prefix: Callable[[Path], bool]
) -> list[Path]:
    """Subfolders of ``dirs`` that ``is_prefix`` accepts; an entry that is one counts too."""
    found: list[Path] = []
    for folder in dirs:
        base = Path(folder).expanduser().absolute()
        if is_prefix(base):
            found.append(base)
            continue
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            continue
        found += [
            Path(e.path)
            for e in entries
            if IN_PROGRESS_MARK not in e.name and _is_dir(e) and is_prefix(Path(e.path))
        ]
    return found


def unreadable_in(dirs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Subfolders of ``dirs`` the server's user cannot enter (listed with a problem)."""
    found: list[Path] = []
    for folder in dirs:
        try:
            entries = sorted(os.scandir(Path(folder).expanduser().absolute()), key=lambda e: e.name)
        except OSError:
            continue
        found += [
            Path(e.path) for e in entries if _is_dir(e) and not os.access(e.path, os.R_OK | os.X_OK)
        ]
    return found


def unreadable_candidate(kind: EnvironmentKind, prefix: Path, error: OSError | None) -> Candidate:
    """A prefix that cannot be read: listed with the reason, never probed."""
    reason = error.strerror if error is not None and error.strerror else "permission denied"
    return Candidate(
        kind=kind,
        name=prefix.name,
        discriminator=str(prefix),
        location={"prefix": str(prefix)},
        identity=None,
        settings={"prefix": str(prefix)},
        problems=[
            f"{prefix} cannot be read by the server's user ({reason}); fix its permissions "
            "or remove it from the configured folders"
        ],
    )


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def unique_prefixes(paths: Iterable[Path]) -> list[Path]:
    """Absolute paths, deduplicated by real path; the first occurrence wins."""
    seen: set[str] = set()
    out: list[Path] = []
    for path in paths:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(Path(os.path.abspath(path)))
    return out
