"""What each kernel start is doing now, for the people waiting on it.

A first start of an image without ipykernel builds a kernel layer (seconds with a small
image, minutes with a CUDA one); a start may also wait on something (another start's
layer build, a free GPU, an image). Each start records its steps here, keyed by kernel
id and carrying its environment, so the REST API (``GET /gpuenv/api/progress``) and the
Lab can show them while the request that started the kernel has not answered yet.

Anything that makes a start wait reports through :meth:`StartProgress.step` with a
sentence and, for a wait, what it waits for (``waiting_for``): the registry does not
know the kinds of waits in advance. A finished start stays listed for a while (its
last step says ready or why it failed), so a client that looks late still sees the end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

StepState = Literal["running", "done", "failed"]
StartState = Literal["starting", "ready", "failed"]

KEEP_FINISHED_SECONDS = 300.0
KEEP_FINISHED_COUNT = 50
# A start that never said it ended (its manager gave up between two calls) is dropped then.
KEEP_UNFINISHED_SECONDS = 6 * 3600.0


@dataclass
class ProgressStep:
    """One step of a start: ``key`` names the kind, ``message`` says it to a person."""

    key: str
    message: str
    started: float
    state: StepState = "running"
    ended: float | None = None
    waiting_for: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "message": self.message,
            "state": self.state,
            "waiting_for": self.waiting_for,
            "detail": self.detail,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "seconds": round((self.ended or time.time()) - self.started, 1),
        }


@dataclass
class StartProgress:
    """The steps of one kernel start, in order; the last one is the current one."""

    kernel_id: str
    environment_id: str | None
    environment_name: str | None
    display_name: str | None
    started: float = field(default_factory=time.time)
    state: StartState = "starting"
    ended: float | None = None
    reason: str | None = None
    steps: list[ProgressStep] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def step(self, key: str, message: str, waiting_for: str | None = None) -> None:
        """A new step begins; the one before it is done."""
        with self._lock:
            now = time.time()
            self._close_current("done", now)
            self.steps.append(ProgressStep(key, message, now, waiting_for=waiting_for))

    def detail(self, text: str) -> None:
        """What the current step is at (a build's latest line), shown under it."""
        with self._lock:
            if self.steps and self.steps[-1].state == "running":
                self.steps[-1].detail = text[:300]

    def finish(self, message: str = "Kernel ready") -> None:
        """The start succeeded: the last step is done and the start is ready."""
        with self._lock:
            if self.state != "starting":
                return
            now = time.time()
            self._close_current("done", now)
            self.steps.append(ProgressStep("ready", message, now, "done", now))
            self.state, self.ended = "ready", now

    def fail(self, reason: str) -> None:
        """The start failed: the current step failed, with the reason the user reads."""
        with self._lock:
            if self.state != "starting":
                return
            now = time.time()
            if not self._close_current("failed", now):
                self.steps.append(ProgressStep("failed", reason, now, "failed", now))
            self.state, self.ended, self.reason = "failed", now, reason

    def refuse(self, reason: str) -> None:
        """Refused by a check after the kernel answered: failed, whatever it said before."""
        with self._lock:
            now = time.time()
            self._close_current("failed", now)
            self.steps.append(ProgressStep("refused", reason, now, "failed", now))
            self.state, self.ended, self.reason = "failed", now, reason

    def _close_current(self, state: StepState, now: float) -> bool:
        if self.steps and self.steps[-1].state == "running":
            self.steps[-1].state, self.steps[-1].ended = state, now
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            current = self.steps[-1] if self.steps else None
            return {
                "kernel_id": self.kernel_id,
                "environment": {
                    "id": self.environment_id,
                    "name": self.environment_name,
                    "display_name": self.display_name,
                },
                "state": self.state,
                "message": current.message if current else "Starting the kernel",
                "reason": self.reason,
                "started": _iso(self.started),
                "ended": _iso(self.ended),
                "seconds": round((self.ended or time.time()) - self.started, 1),
                "steps": [step.to_json() for step in self.steps],
            }


def reason_of(err: BaseException) -> str:
    """What a failed start says: our message, else the error itself."""
    if isinstance(err, asyncio.CancelledError):
        return "The start was cancelled."
    return str(getattr(err, "message", None) or err) or type(err).__name__


_starts: dict[str, StartProgress] = {}
_lock = threading.Lock()


def begin(
    kernel_id: str,
    environment_id: str | None,
    environment_name: str | None = None,
    display_name: str | None = None,
) -> StartProgress:
    """A new start of ``kernel_id`` (a restart replaces the record of the one before)."""
    progress = StartProgress(kernel_id, environment_id, environment_name, display_name)
    with _lock:
        _starts[kernel_id] = progress
        _prune(time.time())
    return progress


def starts(kernel_id: str | None = None, environment_id: str | None = None) -> list[StartProgress]:
    """Starts under way and those finished lately, oldest first, optionally filtered."""
    with _lock:
        _prune(time.time())
        found = list(_starts.values())
    return [
        start
        for start in found
        if (kernel_id is None or start.kernel_id == kernel_id)
        and (environment_id is None or start.environment_id == environment_id)
    ]


def _prune(now: float) -> None:
    for start in list(_starts.values()):
        if start.ended is None:
            if now - start.started > KEEP_UNFINISHED_SECONDS:
                _starts.pop(start.kernel_id, None)
        elif now - start.ended > KEEP_FINISHED_SECONDS:
            _starts.pop(start.kernel_id, None)
    finished = sorted(
        (s for s in _starts.values() if s.ended is not None), key=lambda s: s.ended or 0
    )
    for start in finished[: max(0, len(finished) - KEEP_FINISHED_COUNT)]:
        _starts.pop(start.kernel_id, None)


def _iso(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()
