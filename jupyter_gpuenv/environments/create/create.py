"""Create a conda environment from an environment.yml: plan (checked, nothing written), then run.

:func:`plan_create` does every check that needs no solving — the file, where it goes,
whether it is free and allowed, the CUDA version, the engine — so the REST API can answer
400/403/409 at once and hand the long part to a job. :func:`run_create` runs the engine
(a conda-compatible CLI, else py-rattler plus the environment's pip) and guarantees that a
failed or interrupted create leaves no prefix behind and never touches one it did not make.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import environments_txt
from .cli_engine import CondaCli, create_with_cli, find_cli
from .cuda import CudaChoice, choose_cuda, driver_too_old, host_cuda_version
from .errors import CreateFailed, EnvironmentExists
from .job import CreateJob
from .pip_section import install_pip_section
from .rattler_engine import create_with_rattler
from .spec import EnvironmentSpec, InvalidEnvironmentFile
from .target import new_prefix

# Prefixes planned or being created by this process: a second create of the same prefix
# (two REST requests at once) is refused at once instead of racing the first.
_claimed: set[Path] = set()
_claimed_lock = threading.Lock()


@dataclass
class CreateRequest:
    """What a user asks for: the file, and optionally another name or prefix and a CUDA."""

    spec: EnvironmentSpec
    name: str | None = None
    prefix: str | None = None
    cuda: str | None = None


@dataclass
class CreatePlan:
    """Everything decided before any work: where, which engine, which CUDA."""

    spec: EnvironmentSpec
    target: Path
    cuda: CudaChoice
    cli: CondaCli | None
    warnings: list[str] = field(default_factory=list)

    @property
    def engine(self) -> str:
        return self.cli.kind if self.cli is not None else "rattler"


def plan_create(
    config: Any,
    request: CreateRequest,
    host_cuda: Callable[[], str | None] = host_cuda_version,
) -> CreatePlan:
    """Check the request; raises the error a user must fix (400, 403, 409) before any work."""
    spec = request.spec
    if not spec.conda:
        raise InvalidEnvironmentFile("environment.yml lists no conda dependencies to install")
    host_version: list[str | None] = []

    def host() -> str | None:
        if not host_version:
            host_version.append(host_cuda())
        return host_version[0]

    cuda = choose_cuda(request.cuda, config.environment_create_cuda, host)
    name = request.name or (None if request.prefix else spec.name)
    target = new_prefix(config, name, request.prefix or (None if name else spec.prefix))
    warnings = [w for w in [driver_too_old(cuda, host())] if w]
    wanted = str(config.environment_create_engine).lower()
    cli = None if wanted == "rattler" else find_cli(wanted)
    if cli is None and wanted not in ("auto", "rattler"):
        raise CreateFailed(
            f"c.GpuEnv.environment_create_engine = {wanted!r}, but no {wanted} CLI was found "
            "($CONDA_EXE, $MAMBA_EXE, PATH, the conda roots)"
        )
    with _claimed_lock:
        if target in _claimed:
            raise EnvironmentExists(f"{target} is being created by another request")
        _claimed.add(target)
    return CreatePlan(spec, target, cuda, cli, warnings)


def release(plan: CreatePlan) -> None:
    """The plan will not run (or has run): its prefix may be planned again."""
    with _claimed_lock:
        _claimed.discard(plan.target)


def run_rattler(plan: CreatePlan, job: CreateJob) -> None:
    """The rattler create on an event loop of its own. In the main thread, Ctrl-C and
    SIGTERM interrupt the job rather than cancel the loop's task: a cancel would leave
    rattler's threads writing into the staging folder after it was removed (and asyncio
    drops a Ctrl-C whose cancel such a future does not take). The create stops at its
    next step and removes what it made; the signal handlers before are put back."""
    before: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            before[signum] = signal.signal(signum, lambda *_: job.interrupt())
    try:
        asyncio.run(create_with_rattler(plan.spec, plan.target, plan.cuda, job))
    finally:
        for signum, handler in before.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def run_create(plan: CreatePlan, job: CreateJob) -> None:
    """Create ``plan.target``; on any failure or interrupt nothing is left at the prefix."""
    job.engine, job.cuda, job.prefix = plan.engine, plan.cuda.version, str(plan.target)
    job.warnings += [w for w in plan.warnings if w not in job.warnings]
    existed = os.path.lexists(plan.target)
    try:
        if existed:  # taken since it was planned: never touch it
            raise CreateFailed(f"{plan.target} appeared before the create started; left as it is")
        if plan.cli is not None:
            create_with_cli(plan.cli, plan.spec, plan.target, plan.cuda, job)
        else:
            run_rattler(plan, job)
            install_pip_section(plan.spec, plan.target, job)
        job.commit()
        environments_txt.add(plan.target)
    except BaseException as err:
        if not existed and not isinstance(err, EnvironmentExists):  # what we made, only
            shutil.rmtree(plan.target, ignore_errors=True)
        if job.cancelled:
            job.fail("the create was cancelled; nothing was left behind", 499)
        elif isinstance(err, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
            job.fail("the create was interrupted; nothing was left behind", 499)
        else:
            job.fail(str(getattr(err, "message", None) or err), getattr(err, "status", 500))
        raise
    finally:
        release(plan)
