"""Creating a conda environment with py-rattler, where no conda, mamba or micromamba exists.

Solve the file's specs against its channels (the configured ones when it names none)
with the chosen ``__cuda``; install into a hidden sibling of the prefix with the final
prefix written into the files (``alternative_target_prefix``), so nothing half-made ever
sits at the prefix; record ``variables`` and the requested specs as conda does
(``conda-meta/state``, ``conda-meta/history``); then rename it into place in one step.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ..candidates import IN_PROGRESS_MARK
from ..conda_config import CondaSettings
from .cuda import CudaChoice
from .errors import ChannelsUnreachable, CreateFailed, EnvironmentExists, SolveConflict
from .job import CreateJob
from .spec import EnvironmentSpec, InvalidEnvironmentFile

DEFAULTS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
CONFLICT_LINES = 25


def staging_path(target: Path) -> Path:
    """A hidden sibling on the same file system, so the final rename is atomic."""
    return target.parent / f".{target.name}{IN_PROGRESS_MARK}{os.getpid()}-{time.time_ns()}"


def sweep_abandoned(folder: Path) -> None:
    """Remove staging folders whose process is gone (a create killed with SIGKILL, or a
    server that stopped mid-create); those of live processes are left alone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        _, mark, rest = entry.name.partition(IN_PROGRESS_MARK)
        pid = rest.split("-", 1)[0]
        if mark and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def create_with_rattler(
    spec: EnvironmentSpec, target: Path, cuda: CudaChoice, job: CreateJob
) -> None:
    """Solve, install into a staging sibling, rename to ``target``; nothing left on failure."""
    import rattler
    from rattler.exceptions import SolverError

    specs = match_specs(spec)
    channels = rattler_channels(spec.channels or CondaSettings.load().channels, spec.base_dir)
    job.step("solve", f"Solving {len(specs)} specs ({cuda.describe()}) from {', '.join(channels)}")
    try:
        records = await rattler.solve(channels, specs, virtual_packages=virtual_packages(cuda))
    except SolverError as err:
        raise SolveConflict(conflict_message(str(err))) from None
    except Exception as err:  # fetching repodata: an unreachable or malformed channel
        reason = _first_lines(str(err), 5)
        raise ChannelsUnreachable(f"reading the channels failed: {reason}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(target.parent)
    staging = staging_path(target)
    try:
        job.step("download", f"Downloading and extracting {len(records)} packages", len(records))
        await rattler.install(
            records,
            staging,
            alternative_target_prefix=target,
            show_progress=False,
            reporter=_Reporter(job, len(records)),
        )
        (staging / "CACHEDIR.TAG").unlink(missing_ok=True)  # an environment, not a cache
        write_state(staging, spec.variables)
        write_history(staging, records, spec.conda, target)
        job.stop_if_interrupted()
        if os.path.lexists(target):
            raise EnvironmentExists(f"{target} appeared while it was being created; left as it is")
        os.rename(staging, target)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, Exception) and not isinstance(err, CreateFailed | EnvironmentExists):
            reason = _first_lines(str(err), 8)
            raise CreateFailed(f"installing the packages failed: {reason}") from err
        raise


def match_specs(spec: EnvironmentSpec) -> list[Any]:
    """The dependencies as rattler match specs (conda's ``name=version=build`` included)."""
    from rattler import MatchSpec

    out = []
    for text in spec.conda:
        try:
            out.append(MatchSpec(text))
        except Exception as err:
            message = f"dependency {text!r} is not a package spec: {err}"
            raise InvalidEnvironmentFile(message) from None
    return out


def rattler_channels(channels: list[str], base_dir: Path | None) -> list[str]:
    """conda's channel names as rattler takes them: ``defaults`` spelled out, paths as URLs."""
    out: list[str] = []
    for channel in channels:
        if channel == "nodefaults":
            continue
        if channel == "defaults":
            found = list(DEFAULTS)
        elif channel.startswith(("/", "./", "../", "~")):
            path = Path(os.path.expanduser(channel))
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            found = [path.resolve().as_uri()]
        else:
            found = [channel]
        out += [c for c in found if c not in out]
    return out


def virtual_packages(cuda: CudaChoice) -> list[Any]:
    """The host's virtual packages with ``__cuda`` as chosen (present, absent, overridden)."""
    from rattler import Override, VirtualPackage, VirtualPackageOverrides

    if cuda.version is not None:
        overrides = VirtualPackageOverrides(cuda=Override.string(cuda.version))
        return list(VirtualPackage.detect(overrides))
    detected = [vp.into_generic() for vp in VirtualPackage.detect(VirtualPackageOverrides())]
    return [vp for vp in detected if vp.name.normalized != "__cuda"]


def conflict_message(text: str) -> str:
    """The solver's explanation, trimmed to what names the conflicting packages."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    head = "the packages conflict: no set of packages satisfies every dependency"
    body = "\n".join(lines[:CONFLICT_LINES])
    extra = len(lines) - CONFLICT_LINES
    more = f"\n... ({extra} more lines)" if extra > 0 else ""
    return f"{head}\n{body}{more}"


def write_state(prefix: Path, variables: dict[str, str]) -> None:
    """``variables:`` where ``conda env config vars`` keeps them (conda-meta/state)."""
    if not variables:
        return
    state = prefix / "conda-meta" / "state"
    state.write_text(json.dumps({"env_vars": variables}, indent=2) + "\n", encoding="utf-8")


def write_history(prefix: Path, records: list[Any], requested: list[str], target: Path) -> None:
    """conda's history block, so ``export --from-history`` knows what was asked for."""
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        f"==> {when} <==",
        f"# cmd: jupyter gpuenv create -p {target} (rattler {rattler_version()})",
    ]
    for record in sorted(records, key=lambda r: r.name.normalized):
        channel = str(record.channel or "").rstrip("/")
        lines.append(
            f"+{channel}/{record.subdir}::{record.name.normalized}-{record.version}-{record.build}"
        )
    lines.append(f"# update specs: {requested!r}")
    (prefix / "conda-meta" / "history").write_text("\n".join(lines) + "\n", encoding="utf-8")


class _Reporter:
    """rattler's installer callbacks as the job's download and link steps."""

    def __init__(self, job: CreateJob, total: int) -> None:
        self.job, self.total = job, total
        self.downloaded = self.linked = 0
        self.linking = False

    def on_download_completed(self, download_idx: int) -> None:
        self.downloaded += 1
        self.job.advance(done=self.downloaded)

    def on_link_start(self, operation: int, package_name: str) -> int:
        if not self.linking:
            self.linking = True
            self.job.step("link", f"Linking {self.total} packages", self.total)
        self.job.advance(detail=package_name)
        return operation

    def on_link_complete(self, index: int) -> None:
        self.linked += 1
        self.job.advance(done=self.linked)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):  # every other callback: nothing to show
            return _ignore
        raise AttributeError(name)


def _ignore(*args: Any) -> int:
    return 0


@functools.cache
def rattler_version() -> str:
    try:
        return metadata.version("py-rattler")
    except metadata.PackageNotFoundError:
        return "unknown"


def _first_lines(text: str, count: int) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines()[:count]) or "no reason given"
