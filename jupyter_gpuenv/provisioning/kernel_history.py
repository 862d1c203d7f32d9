"""What happened to each kernel of this process: its starts, its last exit, Docker's reach.

jupyter_client builds a new provisioner for every (re)start and a restart replaces the
container, so whatever the old process left (exit code, signal, an out-of-memory kill,
its last log lines) must be read before the container is removed and kept outside the
provisioner. This registry, keyed by kernel id, is that place; the REST API, the next
kernel process (through ``JUPYTER_GPUENV_PREVIOUS_EXIT``) and the idle reclaimer read it.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..kernel.previous_exit import PREVIOUS_EXIT_ENV

LOG_LINES = 20


@dataclass
class KernelExit:
    """How one kernel process ended. ``requested``: the server asked it to stop."""

    code: int | None
    signal: str | None
    oom_killed: bool
    reason: str
    at: float  # time.time()
    requested: bool = False
    log_tail: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "signal": self.signal,
            "oom_killed": self.oom_killed,
            "reason": self.reason,
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "requested": self.requested,
            "log_tail": list(self.log_tail),
        }


@dataclass
class KernelHistory:
    """One kernel id's record across its restarts."""

    kernel_id: str
    starts: int = 0
    last_exit: KernelExit | None = None
    docker_unreachable_since: float | None = None  # time.time() when Docker stopped answering
    docker_reason: str | None = None
    reclaim_warning: dict[str, Any] | None = None  # set by the GPU idle reclaimer

    @property
    def restart_count(self) -> int:
        return max(0, self.starts - 1)


_histories: dict[str, KernelHistory] = {}
_lock = threading.Lock()


def history_of(kernel_id: str) -> KernelHistory:
    """The record of ``kernel_id``, created on first use."""
    with _lock:
        return _histories.setdefault(kernel_id, KernelHistory(kernel_id))


def known_history(kernel_id: str) -> KernelHistory | None:
    with _lock:
        return _histories.get(kernel_id)


def forget(kernel_id: str) -> None:
    """Drop the record when the kernel is shut down for good."""
    with _lock:
        _histories.pop(kernel_id, None)


def signal_name(number: int) -> str | None:
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


def human_limit(limit: int | None) -> str | None:
    """A memory limit in bytes as people write it (300 MiB, 2 GiB)."""
    if not limit:
        return None
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if limit >= size:
            value = limit / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{limit} B"


def describe(
    code: int | None,
    signal_: str | None,
    oom_killed: bool,
    requested: bool,
    mem_limit: int | None = None,
    vanished: bool = False,
) -> str:
    """One sentence: why the process ended."""
    if vanished:
        return "the kernel container disappeared (removed outside the server, or Docker restarted)"
    if oom_killed:
        limit = human_limit(mem_limit)
        return (
            f"killed: out of memory (limit {limit}, mem_limit)"
            if limit
            else "killed: out of memory (the machine ran out of memory)"
        )
    if requested:
        return "stopped by the server (shutdown or restart)"
    if signal_:
        hint = " (possibly the out-of-memory killer)" if signal_ == "SIGKILL" else ""
        return f"killed by {signal_}{hint}"
    if code == 0:
        return "the kernel process exited by itself (code 0)"
    return f"the kernel process exited with code {code}"


def container_exit(
    state: dict[str, Any], mem_limit: int | None, logs: str, requested: bool
) -> KernelExit:
    """From ``docker inspect``'s State: docker-init exits 128+N for a signal N."""
    code = state.get("ExitCode")
    code = int(code) if isinstance(code, int) else None
    oom = bool(state.get("OOMKilled"))
    sig = signal_name(code - 128) if code is not None and code > 128 else None
    lines = [line for line in logs.rstrip().splitlines() if line.strip()][-LOG_LINES:]
    return KernelExit(
        code=code,
        signal=sig,
        oom_killed=oom,
        reason=describe(code, sig, oom, requested and not oom, mem_limit),
        at=time.time(),
        requested=requested and not oom,
        log_tail=lines,
    )


def vanished_exit() -> KernelExit:
    return KernelExit(
        None, None, False, describe(None, None, False, False, vanished=True), time.time()
    )


def process_exit(returncode: int | None, requested: bool) -> KernelExit:
    """From a local process's return code (negative: killed by that signal)."""
    sig = signal_name(-returncode) if returncode is not None and returncode < 0 else None
    return KernelExit(
        code=returncode,
        signal=sig,
        oom_killed=False,
        reason=describe(returncode, sig, False, requested),
        at=time.time(),
        requested=requested,
    )


def previous_exit_environment(kernel_id: str | None) -> dict[str, str]:
    """``JUPYTER_GPUENV_PREVIOUS_EXIT`` for the next process of a restarted kernel."""
    history = known_history(kernel_id or "")
    if history is None or history.last_exit is None:
        return {}
    data = history.last_exit.to_json()
    data["log_tail"] = data["log_tail"][-5:]
    data["restart_count"] = history.restart_count
    return {PREVIOUS_EXIT_ENV: json.dumps(data)}
