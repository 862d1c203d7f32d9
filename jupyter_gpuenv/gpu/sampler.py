"""GpuSampler: one NVML sample every few seconds, in a thread, shared by every client.

Requests never wait on NVML: they read the latest sample (already attributed to kernels,
filtered for the user, and encoded as JSON). Before the first sample, or right after a
quiet spell, a request waits a bounded moment for the next sample without blocking the
event loop, then answers the "sampling" state. The thread pauses when nobody has asked
for a while, so an idle server does not poll the GPUs for ever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..kernel.gpu_snapshot import GpuSnapshot
from ..kernel.nvml import NvmlAdapter
from .attribution import (
    DockerContainerLabels,
    KernelRecord,
    ProcessAttributor,
    collect_kernel_records,
)
from .grant import read_user_grant
from .history import GpuHistory
from .view import GpuView

KernelRecords = Callable[[], Awaitable[list[KernelRecord]]]

RECORDS_TIMEOUT = 2.0
FIRST_SAMPLE_WAIT = 0.5


@dataclass(frozen=True)
class Sample:
    """One finished sample: the snapshot and its REST body, encoded once."""

    snapshot: GpuSnapshot
    body: bytes
    taken: float  # time.monotonic() when the sample finished


def encode(snapshot: GpuSnapshot) -> Sample:
    body = json.dumps(snapshot.to_json(), separators=(",", ":")).encode("utf-8")
    return Sample(snapshot, body, time.monotonic())


SAMPLING = encode(GpuSnapshot.sampling())


class GpuSampler:
    """Samples ``adapter`` every ``interval`` seconds while someone is asking, and all
    the time while it keeps a history of present GPUs (charts and metrics over time
    need every sample, not only those taken while a panel was open).

    ``kernel_records`` is a coroutine function run on the server's event loop (kernel
    and session managers live there); ``attributor`` maps PIDs to kernels; ``view``
    filters for this server's user. Start with :meth:`start` (or implicitly by
    :meth:`current`); :meth:`stop` ends the thread. ``history`` keeps the last
    ``history_window`` seconds of samples (0: none).
    """

    def __init__(
        self,
        adapter: NvmlAdapter,
        interval: float = 2.0,
        attributor: ProcessAttributor | None = None,
        kernel_records: KernelRecords | None = None,
        view: GpuView | None = None,
        idle_after: float | None = None,
        log: logging.Logger | None = None,
        history_window: float = 600.0,
    ) -> None:
        self.adapter = adapter
        self.interval = max(0.05, float(interval))
        self.attributor = attributor
        self.kernel_records = kernel_records
        self.view = view or GpuView(show_all=True)
        self.idle_after = idle_after if idle_after is not None else max(60.0, 10 * self.interval)
        self.log = log or logging.getLogger(__name__)
        self.history = GpuHistory(history_window, self.interval)
        self.sample_seconds: float | None = None  # duration of the last sample
        self._latest: Sample | None = None
        self._last_demand = time.monotonic()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fresh: asyncio.Event | None = None
        self._start_lock = threading.Lock()
        self._failed_once = False

    # -- lifecycle -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the sampling thread (idempotent); binds to the running event loop if any."""
        with self._start_lock:
            if self.running or self._stopping.is_set():
                return
            try:
                self._loop = asyncio.get_running_loop()
                self._fresh = asyncio.Event()
            except RuntimeError:
                self._loop = None
            self._thread = threading.Thread(
                target=self._run, name="gpuenv-gpu-sampler", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling and shut NVML down. Safe to call from the event loop."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # The thread may be waiting for the loop we are running on: don't wait long.
            thread.join(timeout=0.2)
        if thread is None or not thread.is_alive():
            self.adapter.close()

    # -- reading -------------------------------------------------------------------

    def latest(self) -> Sample | None:
        """The last finished sample, without waiting; counts as demand."""
        self._demand()
        return self._latest

    async def current(self, max_wait: float = FIRST_SAMPLE_WAIT) -> Sample:
        """The latest sample; waits at most ``max_wait`` (never blocking the loop) when
        there is none yet or it predates a quiet spell."""
        self.start()
        woke = self._demand()
        sample = self._latest
        if sample is not None and not woke and not self._stale(sample):
            return sample
        fresh = self._fresh
        if fresh is not None and self._loop is asyncio.get_running_loop():
            try:
                await asyncio.wait_for(fresh.wait(), max_wait)
            except TimeoutError:
                pass
        return self._latest or sample or SAMPLING

    def sample_now(self, records: list[KernelRecord] | None = None) -> Sample:
        """Take one sample synchronously (the CLI; tests). Does not need :meth:`start`."""
        sample = self._take(records)
        self._latest = sample
        return sample

    # -- internals -----------------------------------------------------------------

    def _stale(self, sample: Sample) -> bool:
        return time.monotonic() - sample.taken > 2 * self.interval + 5.0

    def _quiet(self) -> bool:
        """Nobody asked lately, and no history needs samples (off, or no GPU to read)."""
        if time.monotonic() - self._last_demand <= self.idle_after:
            return False
        latest = self._latest
        keeps_history = self.history.window > 0 and latest is not None
        return not (keeps_history and latest is not None and latest.snapshot.available)

    def _demand(self) -> bool:
        """Record a request; True when it ends a quiet spell (the sample is old)."""
        now = time.monotonic()
        idle = now - self._last_demand > self.idle_after
        self._last_demand = now
        if idle:
            self._wake.set()
        return idle

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._quiet():
                self._wake.wait()  # quiet: sleep until a request arrives
                self._wake.clear()
                continue
            records = self._records()
            if self._stopping.is_set():
                break
            self._latest = self._take(records)
            self._notify()
            self._wake.wait(self.interval)
            self._wake.clear()
        self.adapter.close()

    def _take(self, records: list[KernelRecord] | None) -> Sample:
        started = time.perf_counter()
        try:
            snapshot = self.adapter.read()
            if self.attributor is not None and snapshot.available:
                self.attributor.attribute(snapshot, records or [])
            snapshot = self.view.apply(snapshot)
        except Exception as exc:  # a bug must not kill the sampler or spam tracebacks
            if not self._failed_once:
                self.log.warning("GPU sampling failed: %s", exc, exc_info=True)
                self._failed_once = True
            snapshot = GpuSnapshot.unavailable(f"GPU sampling failed: {exc}")
        self.sample_seconds = time.perf_counter() - started
        self.history.record(snapshot)
        return encode(snapshot)

    def _records(self) -> list[KernelRecord]:
        loop = self._loop
        if self.kernel_records is None or loop is None or loop.is_closed():
            return []
        try:
            future: concurrent.futures.Future[list[KernelRecord]] = (
                asyncio.run_coroutine_threadsafe(_awaited(self.kernel_records()), loop)
            )
        except RuntimeError:  # loop shutting down
            return []
        try:
            return future.result(RECORDS_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return []
        except Exception as exc:
            self.log.debug("GPU attribution: kernel records unavailable: %s", exc)
            return []

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._set_fresh)
        except RuntimeError:
            pass

    def _set_fresh(self) -> None:
        fresh, self._fresh = self._fresh, asyncio.Event()
        if fresh is not None:
            fresh.set()


async def _awaited(records: Awaitable[list[KernelRecord]]) -> list[KernelRecord]:
    return await records


def build_gpu_sampler(
    config: Any,
    serverapp: Any = None,
    log: logging.Logger | None = None,
    nvml: Any = None,
    environ: dict[str, str] | None = None,
    extra_records: Callable[[], list[KernelRecord]] | None = None,
) -> GpuSampler:
    """The sampler as the server (and, without ``serverapp``, the CLI) runs it.

    ``nvml`` replaces the pynvml module (tests pass a fake NVML here). ``extra_records``:
    kernels of the server that its kernel manager does not list (the warm kernels).
    """
    grant = read_user_grant(config.user_gpus_env, environ)
    attributor = ProcessAttributor(
        container_labels=DockerContainerLabels(docker_host=config.docker_host or None),
        hub_user=config.hub_user
    )
    kernel_records: KernelRecords | None = None
    if serverapp is not None:
        async def kernel_records() -> list[KernelRecord]:
            records = await collect_kernel_records(
                serverapp.kernel_manager, getattr(serverapp, "session_manager", None)
            )
            return records + extra_records() if extra_records is not None else records

    return GpuSampler(
        NvmlAdapter(nvml),
        interval=config.gpu_sample_interval,
        attributor=attributor,
        kernel_records=kernel_records,
        view=GpuView(grant=grant, show_all=config.show_all_gpu_processes),
        log=log,
        history_window=config.gpu_history_seconds,
    )
