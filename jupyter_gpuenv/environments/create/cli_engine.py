"""Creating with the user's own conda, mamba or micromamba, so their .condarc, mirrors and
credentials apply.

The CLI is looked for where conda users have it: ``$CONDA_EXE``, ``$MAMBA_EXE``, ``PATH``,
then the conda roots (``<root>/bin``, ``<root>/condabin``). Each gets its own form of the
command, always with ``-p PREFIX`` (the prefix was checked and is free) and the chosen CUDA
as ``CONDA_OVERRIDE_CUDA``, which all three read. Their output lines move the job's steps.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..conda_config import CondaSettings
from .cuda import CudaChoice
from .errors import CreateFailed, SolveConflict
from .job import CreateJob
from .pip_section import DROPPED_VARIABLES, run_streaming
from .spec import EnvironmentSpec

CliKind = Literal["conda", "mamba", "micromamba"]
KINDS: tuple[CliKind, ...] = ("micromamba", "mamba", "conda")
# Lines of the CLIs' output that begin a step (lower case), in the order steps come.
STEP_WORDS = (
    ("solve", "Solving the environment", ("collecting package metadata", "solving environment")),
    ("download", "Downloading packages", ("downloading", "extracting")),
    ("link", "Linking packages", ("preparing transaction", "executing transaction", "linking")),
    ("pip", "Installing the pip: section", ("installing pip dependencies", "pip subprocess")),
)  # fmt: skip
CONFLICT_WORDS = (
    "unsatisfiable",
    "could not solve",
    "conflict",
    "nothing provides",
    "cannot be installed",
    "packagesnotfound",
    "packages are not available",
)


@dataclass(frozen=True)
class CondaCli:
    """One installed CLI and which of the three it is."""

    kind: CliKind
    path: str


def cli_kind(path: str) -> CliKind:
    name = os.path.basename(path).lower()
    return "micromamba" if "micromamba" in name else "mamba" if "mamba" in name else "conda"


def find_cli(wanted: str = "auto", environ: Mapping[str, str] | None = None) -> CondaCli | None:
    """The CLI to create with: the one named by ``wanted``, or the first found."""
    env = os.environ if environ is None else environ
    candidates = [env.get("CONDA_EXE", ""), env.get("MAMBA_EXE", "")]
    path = env.get("PATH", os.defpath)
    candidates += [shutil.which(kind, path=path) or "" for kind in ("conda", "mamba", "micromamba")]
    settings = CondaSettings.load(env)
    roots = [settings.root_prefix, *settings.install_roots]
    for root in (r for r in roots if r is not None):
        for folder in ("bin", "condabin"):
            candidates += [str(root / folder / kind) for kind in ("conda", "mamba", "micromamba")]
    for candidate in candidates:
        if not candidate or not os.path.isfile(candidate) or not os.access(candidate, os.X_OK):
            continue
        kind = cli_kind(candidate)
        if wanted in ("auto", kind):
            return CondaCli(kind, candidate)
    return None


def create_command(cli: CondaCli, file: Path, prefix: Path) -> list[str]:
    """The CLI's own form of "create this file at this prefix", answering yes to prompts."""
    if cli.kind == "micromamba":
        return [cli.path, "create", "--yes", "--file", str(file), "--prefix", str(prefix)]
    if cli.kind == "mamba":
        return [cli.path, "env", "create", "--yes", "--file", str(file), "--prefix", str(prefix)]
    return [cli.path, "env", "create", "--file", str(file), "--prefix", str(prefix)]


def command_environment(cuda: CudaChoice, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CLI's environment: ours, with the chosen CUDA as ``CONDA_OVERRIDE_CUDA``
    (empty: no ``__cuda``)."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k not in DROPPED_VARIABLES}
    env["CONDA_OVERRIDE_CUDA"] = cuda.version or ""
    return env


def create_with_cli(
    cli: CondaCli, spec: EnvironmentSpec, target: Path, cuda: CudaChoice, job: CreateJob
) -> None:
    """Run the CLI; a failure says why (a conflict as :class:`SolveConflict`)."""
    with tempfile.TemporaryDirectory(prefix="gpuenv-create-") as tmp:
        file = spec.source if spec.source is not None else Path(tmp) / "environment.yml"
        if spec.source is None:
            file.write_text(spec.text, encoding="utf-8")
        job.step("solve", f"{cli.kind}: solving the environment ({cuda.describe()})")
        tail = run_streaming(
            create_command(cli, file, target),
            command_environment(cuda),
            file.parent,
            _StepsFromOutput(job),
            lambda: job.interrupted,
        )
    if tail is None:
        return
    if any(word in tail.lower() for word in CONFLICT_WORDS):
        raise SolveConflict(f"{cli.kind} found no set of packages that satisfies the file:\n{tail}")
    raise CreateFailed(f"{cli.kind} could not create the environment:\n{tail}")


class _StepsFromOutput:
    """Each output line as the step's detail; a line that begins a later step moves to it."""

    def __init__(self, job: CreateJob) -> None:
        self.job = job
        self.reached = 0

    def __call__(self, line: str) -> None:
        lower = line.lower()
        for index, (key, message, words) in enumerate(STEP_WORDS):
            if index > self.reached and any(word in lower for word in words):
                self.reached = index
                self.job.step(key, message)
                break
        self.job.advance(detail=line)
