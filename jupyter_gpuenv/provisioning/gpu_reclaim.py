"""Which kernels hold GPU memory while idle, and what to do about each: warn, then shut down.

``c.GpuEnv.gpu_idle_timeout`` seconds of idleness (no execution, no message on the
kernel's channels, as jupyter_server's ``last_activity`` tracks it) while the latest GPU
sample attributes memory to the kernel's processes end the kernel;
``c.GpuEnv.gpu_idle_warning`` seconds before that the kernel is marked "due for
reclaim", which the REST API, the Lab panel and the status bar show. Decisions only:
the server's periodic task (server/gpu_reclaimer.py) acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..kernel.gpu_snapshot import human_bytes
from .kernel_status import KernelGpuUse

Action = Literal["warn", "shutdown"]


@dataclass(frozen=True)
class ReclaimDecision:
    """What to do with one idle GPU kernel now."""

    kernel_id: str
    action: Action
    idle_seconds: float
    gpu_memory: int
    shutdown_at: float  # time.time() of the shutdown

    @property
    def message(self) -> str:
        minutes = self.idle_seconds / 60
        held = human_bytes(self.gpu_memory) if self.gpu_memory else "GPU memory"
        if self.action == "shutdown":
            return (
                f"Shut down: it held {held} of GPU memory while idle for {minutes:.1f} min "
                "(c.GpuEnv.gpu_idle_timeout)."
            )
        return (
            f"Idle for {minutes:.1f} min while holding {held} of GPU memory: it will be shut "
            "down to free the GPU unless it runs something (c.GpuEnv.gpu_idle_timeout)."
        )


def decide(
    kernel_id: str,
    idle_seconds: float | None,
    gpus: list[KernelGpuUse],
    timeout: float | None,
    warning: float,
    now: float,
) -> ReclaimDecision | None:
    """None while the kernel is busy, recently active, holds no GPU or reclaiming is off."""
    if not timeout or timeout <= 0 or idle_seconds is None or not gpus:
        return None
    remaining = timeout - idle_seconds
    held = sum(use.used_memory or 0 for use in gpus)
    if remaining <= 0:
        return ReclaimDecision(kernel_id, "shutdown", idle_seconds, held, now)
    if remaining <= max(0.0, warning):
        return ReclaimDecision(kernel_id, "warn", idle_seconds, held, now + remaining)
    return None


def check_interval(timeout: float) -> float:
    """How often to look: often enough for the timeout, never busily."""
    return max(0.5, min(15.0, timeout / 10))
