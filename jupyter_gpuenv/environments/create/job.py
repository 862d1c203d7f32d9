"""One create (or clone) and its steps, for whoever waits on it: the CLI's bar, REST clients.

Engines report through :meth:`CreateJob.step` (solve, download, link, pip, ...) and
:meth:`CreateJob.advance` (how many of the step's items are done); the job keeps the
steps in order, like a kernel start's progress, and tells its listeners at each change.
Jobs stay in memory for a while after they end, so a client that polls late still sees
the outcome (``GET /gpuenv/api/environments/jobs/{id}``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

JobState = Literal["running", "done", "failed"]
KEEP_FINISHED_SECONDS = 3600.0
KEEP_FINISHED_COUNT = 50

Listener = Callable[["CreateJob"], None]


@dataclass
class JobStep:
    """One step: ``key`` names the kind (solve, download, link, pip), ``message`` says it."""

    key: str
    message: str
    started: float
    state: JobState = "running"
    ended: float | None = None
    done: int | None = None
    total: int | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "message": self.message,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "detail": self.detail,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "seconds": round((self.ended or time.time()) - self.started, 2),
        }


@dataclass
class CreateJob:
    """A create under way or ended: its target, engine, steps and outcome."""

    action: str
    name: str | None = None
    prefix: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    state: JobState = "running"
    engine: str | None = None
    cuda: str | None = None
    ended: float | None = None
    error: dict[str, Any] | None = None
    environment_id: str | None = None
    warnings: list[str] = field(default_factory=list)
    steps: list[JobStep] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    interrupted: bool = field(default=False, repr=False)
    cancelled: bool = False
    committed: bool = field(default=False, repr=False)
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)

    def interrupt(self) -> None:
        """Stop at the next step (Ctrl-C or SIGTERM): work that cannot be cancelled half
        way, such as rattler's install, ends first, then what it made is removed. A
        running pip or conda child is stopped at once."""
        self.interrupted = True

    def cancel(self) -> bool:
        """A user's request to stop (REST, the Lab), taken as an interrupt. False when
        the job has ended or its environment is already made (remove it instead)."""
        with self._lock:
            if self.state != "running" or self.committed:
                return False
            self.cancelled = self.interrupted = True
        self._tell()
        return True

    def commit(self) -> None:
        """The environment is made and kept: no cancel is taken from here on."""
        with self._lock:
            self.stop_if_interrupted()
            self.committed = True

    def wait(self, timeout: float) -> bool:
        """Wait until the job has ended (done or failed); False if it still runs."""
        return self._ended.wait(timeout)

    def stop_if_interrupted(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def step(self, key: str, message: str, total: int | None = None) -> None:
        """A new step begins; the one before it is done (none begins once interrupted)."""
        self.stop_if_interrupted()
        with self._lock:
            now = time.time()
            self._close("done", now)
            self.steps.append(JobStep(key, message, now, total=total, done=0 if total else None))
        self._tell()

    def advance(self, done: int | None = None, total: int | None = None, detail: str = "") -> None:
        """The current step's count of items done (and total), or a line of what it does."""
        with self._lock:
            if not self.steps or self.steps[-1].state != "running":
                return
            current = self.steps[-1]
            if total is not None:
                current.total = total
            if done is not None:
                current.done = done
            if detail:
                current.detail = detail[-300:]
        self._tell()

    def finish(self, prefix: str, environment_id: str | None = None) -> None:
        with self._lock:
            now = time.time()
            self._close("done", now)
            self.prefix, self.environment_id = prefix, environment_id
            self.state, self.ended = "done", now
        self._ended.set()
        self._tell()

    def fail(self, message: str, status: int = 500) -> None:
        with self._lock:
            now = time.time()
            self._close("failed", now)
            self.state, self.ended = "failed", now
            self.error = {"message": message, "status": status}
        self._ended.set()
        self._tell()

    def _close(self, state: JobState, now: float) -> None:
        if self.steps and self.steps[-1].state == "running":
            self.steps[-1].state, self.steps[-1].ended = state, now

    def _tell(self) -> None:
        for listener in list(self.listeners):
            listener(self)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            current = self.steps[-1] if self.steps else None
            return {
                "id": self.id,
                "action": self.action,
                "name": self.name,
                "prefix": self.prefix,
                "state": self.state,
                "engine": self.engine,
                "cuda": self.cuda,
                "message": current.message if current else "Waiting to start",
                "error": self.error,
                "cancelled": self.cancelled,
                "environment_id": self.environment_id,
                "warnings": list(self.warnings),
                "started": _iso(self.started),
                "ended": _iso(self.ended),
                "seconds": round((self.ended or time.time()) - self.started, 2),
                "steps": [step.to_json() for step in self.steps],
            }


_jobs: dict[str, CreateJob] = {}
_lock = threading.Lock()


def register(job: CreateJob) -> CreateJob:
    """Keep ``job`` where REST clients can find it by id."""
    with _lock:
        _jobs[job.id] = job
        _prune(time.time())
    return job


def find(job_id: str) -> CreateJob | None:
    with _lock:
        return _jobs.get(job_id)


def jobs() -> list[CreateJob]:
    """Jobs under way and those ended lately, oldest first."""
    with _lock:
        _prune(time.time())
        return sorted(_jobs.values(), key=lambda j: j.started)


def stop_all(wait_seconds: float) -> list[CreateJob]:
    """Cancel every running create and wait up to ``wait_seconds`` for them to remove
    what they made (a server going away leaves no half-made environment); answers the
    jobs still running then (rattler's download or link ends its step first)."""
    with _lock:
        running = [job for job in _jobs.values() if job.state == "running"]
    for job in running:
        job.cancel()
    deadline = time.monotonic() + wait_seconds
    for job in running:
        job.wait(max(0.0, deadline - time.monotonic()))
    return [job for job in running if job.state == "running"]


def _prune(now: float) -> None:
    ended = sorted((j for j in _jobs.values() if j.ended is not None), key=lambda j: j.ended or 0)
    for job in ended:
        if now - (job.ended or now) > KEEP_FINISHED_SECONDS:
            _jobs.pop(job.id, None)
    ended = [j for j in ended if j.id in _jobs]
    for job in ended[: max(0, len(ended) - KEEP_FINISHED_COUNT)]:
        _jobs.pop(job.id, None)


def _iso(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()
