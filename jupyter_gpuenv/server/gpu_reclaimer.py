"""The server's periodic task that frees GPUs held by idle kernels.

A tornado ``PeriodicCallback`` on the server's event loop (never a thread that blocks
it): each tick reads the shared GPU sample (which also keeps the sampler awake), asks
provisioning/gpu_reclaim.py what to do with each kernel, marks warned kernels in the
kernel history (served by ``GET /gpuenv/api/kernels``) and shuts the expired ones down
through the kernel manager, remembering them for the panel. Nothing is written into the
kernel itself: reaching its output would mean running code in it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from tornado.ioloop import PeriodicCallback

from ..config import GpuEnv
from ..gpu.sampler import Sample
from ..provisioning.gpu_reclaim import check_interval, decide
from ..provisioning.kernel_history import history_of, known_history
from ..provisioning.kernel_status import gpu_use_by_kernel, idle_seconds

RECENT = 20


class GpuIdleReclaimer:
    """Warns about, then shuts down, kernels holding GPU memory while idle."""

    def __init__(
        self,
        config: GpuEnv,
        current_sample: Callable[[], Awaitable[Sample]],
        kernel_manager: Any,
        log: logging.Logger,
    ) -> None:
        self.config = config
        self.current_sample = current_sample  # the server's latest shared GPU sample
        self.kernel_manager = kernel_manager  # the server's MultiKernelManager
        self.log = log
        self.reclaimed: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._callback: PeriodicCallback | None = None
        self._busy = False

    @property
    def timeout(self) -> float:
        return float(self.config.gpu_idle_timeout or 0)

    def start(self) -> None:
        if self.timeout <= 0 or self._callback is not None:
            return
        interval = check_interval(self.timeout)
        self._callback = PeriodicCallback(self.tick, interval * 1000)
        self._callback.start()
        self.log.info(
            "jupyter_gpuenv: kernels holding GPU memory are shut down after %g s idle",
            self.timeout,
        )

    def stop(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    async def tick(self) -> None:
        if self._busy or self.timeout <= 0:
            return
        self._busy = True
        try:
            await self._check()
        except Exception:  # a bug must not stop the callback or spam the log
            self.log.exception("jupyter_gpuenv: GPU idle check failed")
        finally:
            self._busy = False

    async def _check(self) -> None:
        sample = await self.current_sample()
        uses = gpu_use_by_kernel(sample.snapshot)
        mkm = self.kernel_manager
        config, now = self.config, time.time()
        for kernel_id in list(mkm.list_kernel_ids()):
            try:
                manager = mkm.get_kernel(kernel_id)
            except KeyError:
                continue
            decision = decide(
                kernel_id,
                idle_seconds(manager, now),
                uses.get(kernel_id, []),
                self.timeout,
                float(config.gpu_idle_warning),
                now,
            )
            if decision is None:
                history = known_history(kernel_id)
                if history is not None:
                    history.reclaim_warning = None
                continue
            record = {
                "kernel_id": kernel_id,
                "name": getattr(manager, "kernel_name", None),
                "idle_seconds": round(decision.idle_seconds, 1),
                "gpu_memory": decision.gpu_memory,
                "shutdown_at": _iso(decision.shutdown_at),
                "message": decision.message,
            }
            if decision.action == "warn":
                history = history_of(kernel_id)
                if history.reclaim_warning is None:
                    self.log.warning("Kernel %s: %s", kernel_id, decision.message)
                history.reclaim_warning = record
                continue
            self.log.warning("Kernel %s: %s", kernel_id, decision.message)
            self.reclaimed.appendleft(record)
            await mkm.shutdown_kernel(kernel_id)


def _iso(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).isoformat()
