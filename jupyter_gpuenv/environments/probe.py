"""Run the probe script in an environment and turn whatever happens into a ProbeResult.

Never raises for a broken environment: a timeout, a crash, a missing interpreter or an
unreachable Docker engine becomes a ``problems`` entry. ``transient`` marks outcomes that
may change without the environment changing (timeouts, Docker errors), which the cache
keeps only in memory so a refresh tries again.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from docker import DockerClient

from ..docker.runs import ContainerRun, ImageMissing, run_in_image
from ..errors import DockerUnavailable
from ..kernel import probe_script
from .probe_result import ProbeResult

PROBE_NICENESS = 10
ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV")


@lru_cache(maxsize=1)
def probe_source() -> str:
    return probe_script.source()


@lru_cache(maxsize=1)
def _scratch_dir() -> str:
    """An empty working folder for local probes (nothing there to import by accident)."""
    return tempfile.mkdtemp(prefix="gpuenv-probe-")


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class ProbeSlots:
    """Keeps probes from oversubscribing the CPU.

    Image probes (a container start, often ``import torch``) are few and long and bound a
    cold listing; local probes are many and short. Each running image probe takes one
    core away from the local ones, which run on what is left (at least one at a time).
    """

    def __init__(self, cpus: int | None = None) -> None:
        self.cpus = cpus or usable_cpus()
        self._cond = threading.Condition()
        self._heavy = 0
        self._light = 0

    @contextmanager
    def heavy(self) -> Iterator[None]:
        with self._cond:
            self._heavy += 1
        try:
            yield
        finally:
            with self._cond:
                self._heavy -= 1
                self._cond.notify_all()

    @contextmanager
    def light(self) -> Iterator[None]:
        with self._cond:
            while self._light >= max(1, self.cpus - self._heavy):
                self._cond.wait()
            self._light += 1
        try:
            yield
        finally:
            with self._cond:
                self._light -= 1
                self._cond.notify_all()


class ProbeCounter:
    """Counts probes actually run (tests and benchmarks check that warm listings run none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.local = 0
        self.docker = 0

    def add(self, kind: str) -> None:
        with self._lock:
            if kind == "docker":
                self.docker += 1
            else:
                self.local += 1

    @property
    def total(self) -> int:
        return self.local + self.docker


def probe_prefix(python: str, prefix: str, timeout: float) -> ProbeResult:
    """Probe a conda env or venv with its own interpreter, as a kernel would start it."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    env["PATH"] = os.pathsep.join([os.path.join(prefix, "bin"), env.get("PATH", "")])
    if os.path.isdir(os.path.join(prefix, "conda-meta")):
        env["CONDA_PREFIX"] = prefix
    else:
        env["VIRTUAL_ENV"] = prefix
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            [python, "-c", probe_source()],
            cwd=_scratch_dir(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        return _failed(f"the environment's python {python} cannot run: {exc}", transient=False)
    _lower_priority(process.pid)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        return _interpret(ContainerRun(None, _text(stdout), _text(stderr), True, timeout), timeout)
    run = ContainerRun(
        process.returncode, _text(stdout), _text(stderr), False, time.monotonic() - started
    )
    return _interpret(run, timeout)


def probe_image(
    client: DockerClient, image_id: str, python: str | None, timeout: float
) -> ProbeResult:
    """Probe an image in a short-lived container (``python3``, else ``python``, from its PATH)."""
    interpreters = [python] if python else ["python3", "python"]
    run: ContainerRun | None = None
    try:
        for interpreter in interpreters:
            run = run_in_image(
                client, image_id, [interpreter, "-c", probe_source()], "probe", timeout
            )
            if run.exit_code is not None or run.timed_out:
                break
    except (DockerUnavailable, ImageMissing) as exc:
        return _failed(exc.message, transient=True)
    assert run is not None
    if run.exit_code is None and not run.timed_out:
        tried = " or ".join(interpreters)
        return _failed(
            f"no Python interpreter ({tried}) could be started in the image: {run.stderr}",
            transient=False,
        )
    return _interpret(run, timeout)


def _interpret(run: ContainerRun, timeout: float) -> ProbeResult:
    data = probe_script.parse_output(run.stdout)
    if data is None:
        if run.timed_out:
            return _failed(
                f"the probe did not finish within {timeout:g} s (c.GpuEnv.probe_timeout)",
                transient=True,
            )
        return _failed(
            f"the environment's python failed to run the probe (exit {run.exit_code}): "
            f"{_last_line(run.stderr)}",
            transient=False,
        )
    result = ProbeResult.from_probe_output(data)
    result.probe_seconds = round(run.seconds, 3)
    if result.torch_version and not data.get("torch_probed"):
        if run.timed_out:
            result.problems.append(
                f"import torch did not finish within {timeout:g} s; cuDNN and arch list unknown"
            )
            result.transient = True
        else:
            result.problems.append(
                f"import torch crashed the interpreter (exit {run.exit_code}): "
                f"{_last_line(run.stderr)}"
            )
    return result


def _lower_priority(pid: int) -> None:
    """Probes are background work: running kernels (and the few long image probes, which
    bound a cold listing) get the CPU first."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, PROBE_NICENESS)
    except OSError:
        pass  # the process already exited, or the platform has no priorities


def _failed(message: str, transient: bool) -> ProbeResult:
    return ProbeResult.failed(message, transient)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"
