"""GpuHistory: the last few minutes of GPU use, one point per sample, in bounded memory.

The sampler records every finished sample here (after the per-user view, so the history
holds only what this server's user may see). A point keeps just the figures that are
charted: per GPU the utilization and memory used, per kernel the GPU memory its
processes hold and the SM utilization they caused. The points live in a deque whose
length is fixed by the window and the sample interval, so a server that runs for months
holds the same few hundred points.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..kernel.gpu_snapshot import GpuSnapshot

# Whatever the window and interval, no more points than this (a few MiB at most).
MAX_POINTS = 20_000


@dataclass(frozen=True)
class GpuPoint:
    """One GPU at one sample: utilization in percent, memory in bytes."""

    index: int
    uuid: str | None
    utilization_gpu: int | None
    memory_used: int | None
    memory_total: int | None


@dataclass(frozen=True)
class KernelPoint:
    """One kernel at one sample: GPU memory summed over its processes, on which GPUs."""

    kernel_id: str
    environment_id: str | None
    memory_used: int
    gpus: tuple[int, ...]
    utilization_sm: int | None = None


@dataclass(frozen=True)
class HistoryPoint:
    """What one sample saw, at ``at`` (Unix seconds)."""

    at: float
    gpus: tuple[GpuPoint, ...]
    kernels: tuple[KernelPoint, ...]


def history_length(window: float, interval: float) -> int:
    """How many points cover ``window`` seconds at one sample per ``interval`` (0: off)."""
    if window <= 0:
        return 0
    return min(MAX_POINTS, max(1, math.ceil(window / max(interval, 0.05))))


def point_from_snapshot(snapshot: GpuSnapshot) -> HistoryPoint | None:
    """The charted figures of a sample; None when it read no GPU."""
    if not snapshot.available or snapshot.sampled_at is None:
        return None
    gpus = tuple(
        GpuPoint(g.index, g.uuid, g.utilization_gpu, g.memory_used, g.memory_total)
        for g in snapshot.gpus
    )
    kernels: dict[str, KernelPoint] = {}
    for gpu in snapshot.gpus:
        for proc in gpu.processes:
            if not proc.kernel_id:
                continue
            known = kernels.get(proc.kernel_id)
            memory = proc.used_memory or 0
            if known is None:
                kernels[proc.kernel_id] = KernelPoint(
                    proc.kernel_id,
                    proc.environment_id,
                    memory,
                    (gpu.index,),
                    proc.utilization_sm,
                )
            else:
                on = known.gpus if gpu.index in known.gpus else (*known.gpus, gpu.index)
                kernels[proc.kernel_id] = KernelPoint(
                    known.kernel_id,
                    known.environment_id or proc.environment_id,
                    known.memory_used + memory,
                    on,
                    _add(known.utilization_sm, proc.utilization_sm),
                )
    return HistoryPoint(float(snapshot.sampled_at), gpus, tuple(kernels.values()))


class GpuHistory:
    """The last ``window`` seconds of samples taken every ``interval`` seconds.

    :meth:`record` is called by the sampling thread, :meth:`series` by request handlers;
    a lock keeps the two apart. ``maxlen`` is the cap on the number of points.
    """

    def __init__(self, window: float = 600.0, interval: float = 2.0) -> None:
        self.window = max(0.0, float(window))
        self.interval = float(interval)
        self.maxlen = history_length(self.window, self.interval)
        self._points: deque[HistoryPoint] = deque(maxlen=self.maxlen)
        self._lock = threading.Lock()
        # Series built for the latest sample, by seconds asked: every client polling
        # between two samples gets the same answer without building it again.
        self._series: dict[float, tuple[dict[str, Any], bytes]] = {}
        self._series_of: tuple[float, int] | None = None

    def __len__(self) -> int:
        return len(self._points)

    def record(self, snapshot: GpuSnapshot) -> None:
        """Keep the figures of one sample (samples without GPUs leave no point)."""
        if not self.maxlen:
            return
        point = point_from_snapshot(snapshot)
        if point is None:
            return
        with self._lock:
            if self._points:
                last = self._points[-1].at
                if point.at == last:
                    return  # the same sample twice
                if point.at < last:
                    self._points.clear()  # the clock was set back: the old times mislead
            self._points.append(point)

    def points(self, seconds: float | None = None) -> list[HistoryPoint]:
        """The points of the last ``seconds`` before the newest one (all: None)."""
        with self._lock:
            points = list(self._points)
        if seconds is None or not points:
            return points
        since = points[-1].at - seconds
        return [p for p in points if p.at >= since]

    def series(self, seconds: float) -> dict[str, Any]:
        """The REST form: shared timestamps, and one value per timestamp for each series.

        A GPU or kernel absent from a sample has ``null`` there (a kernel that had not
        started yet, or had freed its GPU memory). ``seconds`` is capped at the window.
        The answer is shared by every caller until the next sample: do not modify it.
        """
        return self._cached(seconds)[0]

    def series_json(self, seconds: float) -> bytes:
        """:meth:`series` encoded as compact JSON, also built once per sample."""
        return self._cached(seconds)[1]

    def _cached(self, seconds: float) -> tuple[dict[str, Any], bytes]:
        covered = min(float(seconds), self.window)
        with self._lock:
            newest = (self._points[-1].at if self._points else 0.0, len(self._points))
        if newest != self._series_of:
            self._series, self._series_of = {}, newest
        cached = self._series.get(covered)
        if cached is None:
            series = self._build(covered)
            cached = (series, json.dumps(series, separators=(",", ":")).encode("utf-8"))
            if len(self._series) < 16:
                self._series[covered] = cached
        return cached

    def _build(self, covered: float) -> dict[str, Any]:
        points = self.points(covered)
        timestamps = [p.at for p in points]
        gpus: dict[tuple[int, str | None], dict[str, Any]] = {}
        kernels: dict[str, dict[str, Any]] = {}
        for i, point in enumerate(points):
            for g in point.gpus:
                entry = gpus.setdefault((g.index, g.uuid), _gpu_entry(g, len(points)))
                entry["utilization_gpu"][i] = g.utilization_gpu
                entry["memory_used"][i] = g.memory_used
                entry["memory_total"] = g.memory_total
            for k in point.kernels:
                kentry = kernels.setdefault(k.kernel_id, _kernel_entry(k, len(points)))
                kentry["memory_used"][i] = k.memory_used
                kentry["utilization_sm"][i] = k.utilization_sm
                kentry["environment_id"] = kentry["environment_id"] or k.environment_id
                kentry["gpus"] = sorted(set(kentry["gpus"]) | set(k.gpus))
        return {
            "seconds": covered,
            "window": self.window,
            "interval": self.interval,
            "timestamps": timestamps,
            "gpus": sorted(gpus.values(), key=lambda e: e["index"]),
            "kernels": sorted(kernels.values(), key=lambda e: e["kernel_id"]),
        }


def _gpu_entry(point: GpuPoint, length: int) -> dict[str, Any]:
    return {
        "index": point.index,
        "uuid": point.uuid,
        "memory_total": point.memory_total,
        "utilization_gpu": [None] * length,
        "memory_used": [None] * length,
    }


def _kernel_entry(point: KernelPoint, length: int) -> dict[str, Any]:
    return {
        "kernel_id": point.kernel_id,
        "environment_id": point.environment_id,
        "gpus": list(point.gpus),
        "memory_used": [None] * length,
        "utilization_sm": [None] * length,
    }


def _add(a: int | None, b: int | None) -> int | None:
    """Utilization of two processes of a kernel, summed: percent of one GPU, so a kernel
    keeping two GPUs busy reads 200."""
    if a is None or b is None:
        return a if b is None else b
    return a + b
