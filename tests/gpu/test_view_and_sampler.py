"""The per-user view, and the sampler thread that serves one shared sample."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.gpu.attribution import KernelRecord, ProcessAttributor
from jupyter_gpuenv.gpu.grant import read_user_grant
from jupyter_gpuenv.gpu.sampler import SAMPLING, GpuSampler, build_gpu_sampler
from jupyter_gpuenv.gpu.view import GpuView
from jupyter_gpuenv.gpu_set import GpuSet
from jupyter_gpuenv.kernel.gpu_snapshot import GpuSnapshot
from jupyter_gpuenv.kernel.nvml import NvmlAdapter
from tests.support.fake_nvml import (
    NVML_ERROR_LIBRARY_NOT_FOUND,
    FakeGpu,
    FakeMig,
    FakeNvml,
    FakeProcess,
)


def host_snapshot() -> tuple[GpuSnapshot, FakeMig, FakeMig]:
    """GPU 0: a process of ours (pid 11) and of someone else (12); GPU 1: two MIG slices."""
    mig_a = FakeMig(processes=[FakeProcess(21)])
    mig_b = FakeMig(processes=[FakeProcess(22)])
    gpus = [
        FakeGpu(processes=[FakeProcess(11), FakeProcess(12)]),
        FakeGpu(mig_mode=1, mig_slots=[mig_a, mig_b]),
    ]
    snap = NvmlAdapter(FakeNvml(gpus)).read()
    for proc in snap.processes():
        proc.own = proc.pid in (11, 21)
    return snap, mig_a, mig_b


def test_show_all_with_no_grant_changes_nothing() -> None:
    snap, _, _ = host_snapshot()
    assert GpuView(show_all=True).apply(snap) is snap


def test_own_processes_only_and_hidden_count() -> None:
    snap, _, _ = host_snapshot()
    view = GpuView().apply(snap)
    assert [[p.pid for p in g.processes] for g in view.gpus] == [[11], [21]]
    assert [g.hidden_processes for g in view.gpus] == [1, 1]
    # The sampler's snapshot is not modified.
    assert [len(g.processes) for g in snap.gpus] == [2, 2]


def test_grant_by_index_keeps_that_gpu() -> None:
    snap, _, _ = host_snapshot()
    view = GpuView(grant=GpuSet.parse("1"), show_all=True).apply(snap)
    assert [g.index for g in view.gpus] == [1] and view.gpu_count == 1


def test_grant_of_one_mig_slice_shows_only_that_slice() -> None:
    snap, mig_a, mig_b = host_snapshot()
    view = GpuView(grant=GpuSet.parse(mig_b.uuid), show_all=True).apply(snap)
    (gpu,) = view.gpus
    assert [m.uuid for m in gpu.mig_devices] == [mig_b.uuid]
    assert [p.pid for p in gpu.processes] == [22] and gpu.hidden_processes == 1


def test_grant_of_nothing_is_unavailable_with_a_reason() -> None:
    snap, _, _ = host_snapshot()
    grant = read_user_grant("GPUENV_GPUS", {"GPUENV_GPUS": "none"})
    view = GpuView(grant=grant).apply(snap)
    assert not view.available and view.gpus == []
    assert view.reason == "no GPU is granted to you on this server (GPUENV_GPUS)"
    grant = read_user_grant("GPUENV_GPUS", {"GPUENV_GPUS": "7"})
    view = GpuView(grant=grant).apply(snap)
    assert view.reason == "none of the GPUs granted to you (GPUENV_GPUS): 7 exist on this machine"


class GatedNvml(FakeNvml):
    """A fake NVML whose start blocks until the test opens the gate (a slow driver)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def nvmlInit(self) -> None:
        assert self.gate.wait(30), "test never opened the gate"
        super().nvmlInit()


async def test_requests_share_one_sample() -> None:
    nvml = FakeNvml([FakeGpu(processes=[FakeProcess(5)])])
    sampler = GpuSampler(NvmlAdapter(nvml), interval=30)
    try:
        first = await sampler.current(max_wait=10)
        assert first.snapshot.available
        for _ in range(50):
            assert await sampler.current() is first
        assert nvml.calls["nvmlDeviceGetCount"] == 1
        body = json.loads(first.body)
        assert body["gpus"][0]["processes"][0]["pid"] == 5
        assert body == first.snapshot.to_json()
    finally:
        sampler.stop()
    assert not sampler.running and nvml.initialized == 0


async def test_a_slow_driver_never_blocks_the_event_loop() -> None:
    nvml = GatedNvml([FakeGpu()])
    sampler = GpuSampler(NvmlAdapter(nvml), interval=0.05)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.ensure_future(ticker())
    try:
        sample = await sampler.current(max_wait=0.2)
        assert sample is SAMPLING
        body = json.loads(sample.body)
        assert body["state"] == "sampling" and body["available"] is False
        assert ticks > 10  # the loop kept running while NVML was stuck
        nvml.gate.set()
        for _ in range(100):
            sample = await sampler.current(max_wait=1)
            if sample is not SAMPLING:
                break
        assert sample.snapshot.available
    finally:
        task.cancel()
        nvml.gate.set()
        sampler.stop()


async def test_samples_are_refreshed_at_the_interval() -> None:
    nvml = FakeNvml([FakeGpu(temperature=40)])
    sampler = GpuSampler(NvmlAdapter(nvml), interval=0.05)
    try:
        first = await sampler.current(max_wait=10)
        nvml.gpus[0].temperature = 77
        for _ in range(200):
            latest = await sampler.current()
            if latest.snapshot.gpus[0].temperature == 77:
                break
            await asyncio.sleep(0.02)
        assert latest.snapshot.gpus[0].temperature == 77
        assert latest.snapshot.sampled_at > first.snapshot.sampled_at
    finally:
        sampler.stop()


async def test_an_idle_sampler_pauses_and_wakes_on_demand() -> None:
    nvml = FakeNvml([FakeGpu()])
    sampler = GpuSampler(NvmlAdapter(nvml), interval=0.02, idle_after=0.1, history_window=0)
    try:
        await sampler.current(max_wait=10)
        await asyncio.sleep(0.5)  # nobody asks: the thread goes quiet
        paused_at = nvml.calls["nvmlDeviceGetCount"]
        await asyncio.sleep(0.3)
        assert nvml.calls["nvmlDeviceGetCount"] == paused_at
        fresh = await sampler.current(max_wait=10)  # stale by now: waits for a new one
        assert nvml.calls["nvmlDeviceGetCount"] > paused_at
        assert time.time() - fresh.snapshot.sampled_at < 5
    finally:
        sampler.stop()


async def test_a_sampler_keeping_history_samples_while_nobody_asks() -> None:
    nvml = FakeNvml([FakeGpu()])
    sampler = GpuSampler(NvmlAdapter(nvml), interval=0.02, idle_after=0.1, history_window=60)
    try:
        await sampler.current(max_wait=10)
        await asyncio.sleep(0.5)  # nobody asks, but the history wants every sample
        before = len(sampler.history)
        await asyncio.sleep(0.3)
        assert len(sampler.history) > before
    finally:
        sampler.stop()


async def test_a_sampler_without_gpus_pauses_even_with_history() -> None:
    nvml = FakeNvml([], init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    sampler = GpuSampler(NvmlAdapter(nvml), interval=0.02, idle_after=0.1, history_window=60)
    try:
        first = await sampler.current(max_wait=10)
        assert not first.snapshot.available
        await asyncio.sleep(0.5)
        calls = sum(nvml.calls.values())
        await asyncio.sleep(0.3)
        assert sum(nvml.calls.values()) == calls
    finally:
        sampler.stop()


async def test_kernel_records_are_collected_on_the_event_loop() -> None:
    loop_thread: list[threading.Thread] = []

    async def records() -> list[KernelRecord]:
        loop_thread.append(threading.current_thread())
        return [KernelRecord("k1", environment_id="venv-a-1", pid=4242)]

    nvml = FakeNvml([FakeGpu(processes=[FakeProcess(4242)])])
    sampler = GpuSampler(
        NvmlAdapter(nvml), interval=30, attributor=ProcessAttributor(), kernel_records=records
    )
    try:
        sample = await sampler.current(max_wait=10)
    finally:
        sampler.stop()
    assert loop_thread == [threading.main_thread()]
    proc = sample.snapshot.processes()[0]
    assert (proc.kernel_id, proc.environment_id) == ("k1", "venv-a-1")


def test_a_bug_in_sampling_becomes_a_reason_not_a_dead_thread() -> None:
    class Broken(NvmlAdapter):
        def read(self) -> GpuSnapshot:
            raise ValueError("boom")

    sampler = GpuSampler(Broken(FakeNvml()))
    sample = sampler.sample_now()
    assert not sample.snapshot.available
    assert sample.snapshot.reason == "GPU sampling failed: boom"


def test_build_gpu_sampler_reads_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    config = GpuEnv(gpu_sample_interval=0.7, user_gpus_env="TEAM_GPUS", hub_user="carol")
    sampler = build_gpu_sampler(config, nvml=FakeNvml([FakeGpu()]), environ={"TEAM_GPUS": "0"})
    assert sampler.interval == 0.7
    assert sampler.view.grant.ids == ("0",) and not sampler.view.show_all
    assert sampler.attributor is not None and sampler.attributor.hub_user == "carol"
    snap = sampler.sample_now().snapshot
    assert snap.available and snap.gpus[0].index == 0
