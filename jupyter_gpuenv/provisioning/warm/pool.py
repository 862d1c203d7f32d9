"""The warm kernels of one environment: kept at their count, replaced when stale.

A pool never starts kernels on its own schedule: :meth:`WarmPool.tend` (called by
pools.py in the background, after each hand-out and periodically) removes kernels that
died, outgrew ``max_age`` or were started from an environment or kernelspec that has
changed since, and starts as many as are missing. Starts that fail are retried after a
delay that doubles up to :data:`MAX_BACKOFF`; the pool says why in :meth:`status`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .pool_config import WarmSpec
from .warm_kernel import WarmKernel

FIRST_BACKOFF = 2.0
MAX_BACKOFF = 300.0

Starter = Callable[[str, dict[str, Any], tuple[str, ...]], Awaitable[WarmKernel]]


class WarmPool:
    """Ready kernels of one environment's kernelspec, and the starts under way."""

    def __init__(
        self,
        spec: WarmSpec,
        environment_id: str,
        kernel_name: str,
        starter: Starter,
        log: logging.Logger,
    ) -> None:
        self.spec = spec
        self.environment_id = environment_id
        self.kernel_name = kernel_name
        self._starter = starter
        self._log = log
        self._ready: list[WarmKernel] = []
        self._starting: set[asyncio.Task[None]] = set()
        self.started_from: dict[str, Any] | None = None  # what new kernels start from
        self.last_error: str | None = None
        self.failures = 0
        self._retry_at = 0.0
        self.handed_out = 0
        self.replaced = 0
        self.closed = False

    # -- hand-out -------------------------------------------------------------------

    def take(self, started_from: dict[str, Any], root: str) -> WarmKernel | None:
        """A ready kernel started from exactly ``started_from`` in ``root``, removed from
        the pool."""
        for warm in self._ready:
            if warm.spec == started_from and warm.root == root:
                self._ready.remove(warm)
                self.handed_out += 1
                return warm
        return None

    def ready_kernels(self) -> list[WarmKernel]:
        return list(self._ready)

    # -- upkeep ---------------------------------------------------------------------

    async def tend(self, started_from: dict[str, Any]) -> None:
        """Drop dead, old or outdated kernels; start the missing ones (in the background)."""
        if self.closed:
            return
        if started_from != self.started_from and self.started_from is not None:
            self._log.info(
                "Warm kernels of %s: the environment or its kernelspec changed, draining",
                self.spec.key,
            )
            self.replaced += len(self._ready)
            await self.drain()
        self.started_from = started_from
        for warm in list(self._ready):
            reason = None
            if warm.spec != started_from:
                reason = "its environment or kernelspec changed"
            elif self.spec.max_age and warm.age() > self.spec.max_age:
                reason = f"older than {self.spec.max_age:.0f} s"
            elif not await warm.alive():
                reason = "it stopped"
            if reason is not None and warm in self._ready:
                self._ready.remove(warm)
                self._log.info("Warm kernel %s replaced: %s", warm.kernel_id, reason)
                self.replaced += 1
                await warm.shutdown()
        missing = self.spec.count - len(self._ready) - len(self._starting)
        if missing <= 0 or time.monotonic() < self._retry_at:
            return
        for _ in range(missing):
            task = asyncio.create_task(self._start_one(started_from))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start_one(self, started_from: dict[str, Any]) -> None:
        try:
            warm = await self._starter(self.kernel_name, started_from, self.spec.preimport)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.failures += 1
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self.failures - 1))
            self._retry_at = time.monotonic() + delay
            message = getattr(err, "message", None) or str(err) or type(err).__name__
            self.last_error = f"{message} (attempt {self.failures}; next try in {delay:.0f} s)"
            self._log.warning("Warm kernel of %s failed to start: %s", self.spec.key, message)
            return
        if self.closed or warm.spec != self.started_from:
            await warm.shutdown()
            return
        self.failures, self.last_error, self._retry_at = 0, None, 0.0
        self._ready.append(warm)
        self._log.info("Warm kernel %s ready for %s", warm.kernel_id, self.spec.key)

    async def drain(self) -> None:
        """Stop every ready kernel; starts under way stop their kernel when they end."""
        ready, self._ready = self._ready, []
        if ready:
            await asyncio.gather(*(warm.shutdown() for warm in ready), return_exceptions=True)

    async def close(self, timeout: float) -> None:
        """Stop everything: starts under way get ``timeout`` s to end, then are cancelled."""
        self.closed = True
        starting = list(self._starting)
        if starting:
            _, pending = await asyncio.wait(starting, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        await self.drain()

    # -- what the status shows ------------------------------------------------------

    def status(self) -> dict[str, Any]:
        retry_in = max(0.0, self._retry_at - time.monotonic()) if self.last_error else 0.0
        return {
            "environment": self.spec.key,
            "environment_id": self.environment_id,
            "kernel_name": self.kernel_name,
            "size": self.spec.count,
            "ready": len(self._ready),
            "starting": len(self._starting),
            "handed_out": self.handed_out,
            "replaced": self.replaced,
            "preimport": list(self.spec.preimport),
            "last_error": self.last_error,
            "failures": self.failures,
            "retry_in": round(retry_in, 1),
        }
