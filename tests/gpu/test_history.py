"""The sampler's GPU history: bounded by window / interval, aligned series, per kernel."""

from __future__ import annotations

import asyncio
import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.gpu.attribution import KernelRecord, ProcessAttributor
from jupyter_gpuenv.gpu.history import MAX_POINTS, GpuHistory, history_length
from jupyter_gpuenv.gpu.sampler import GpuSampler, build_gpu_sampler
from jupyter_gpuenv.kernel.gpu_snapshot import GpuSnapshot
from jupyter_gpuenv.kernel.nvml import NvmlAdapter
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess

GIB = 2**30


def read(nvml: FakeNvml, at: float) -> GpuSnapshot:
    snapshot = NvmlAdapter(nvml).read()
    snapshot.sampled_at = at
    return snapshot


def test_length_follows_window_and_interval() -> None:
    assert history_length(600, 2) == 300
    assert history_length(10, 3) == 4  # rounded up: the window is covered
    assert history_length(0, 2) == 0
    assert history_length(10**9, 0.05) == MAX_POINTS
    assert GpuHistory(600, 2).maxlen == 300


@settings(max_examples=40, deadline=None)
@given(
    window=st.floats(min_value=0, max_value=120),
    interval=st.floats(min_value=0.05, max_value=10),
    samples=st.integers(min_value=0, max_value=400),
)
def test_the_history_never_exceeds_its_cap(window: float, interval: float, samples: int) -> None:
    nvml = FakeNvml([FakeGpu()])
    history = GpuHistory(window, interval)
    cap = history_length(window, interval)
    snapshot = NvmlAdapter(nvml).read()
    for i in range(samples):
        snapshot.sampled_at = 1000.0 + i * interval
        history.record(snapshot)
        assert len(history) <= cap
    assert len(history) == min(samples, cap)


def test_series_are_aligned_with_the_timestamps() -> None:
    gpu0 = FakeGpu(memory_used=2 * GIB, utilization=(10, 1))
    gpu1 = FakeGpu(memory_used=GIB, utilization=(0, 0))
    nvml = FakeNvml([gpu0, gpu1])
    history = GpuHistory(window=60, interval=1)
    for i in range(5):
        gpu0.utilization = (10 * i, 1)
        gpu0.memory_used = (i + 1) * GIB
        history.record(read(nvml, 100.0 + i))
    series = history.series(600)  # more than the window: capped
    assert series["seconds"] == 60 and series["window"] == 60 and series["interval"] == 1
    assert series["timestamps"] == [100.0, 101.0, 102.0, 103.0, 104.0]
    first, second = series["gpus"]
    assert first["index"] == 0 and first["uuid"] == gpu0.uuid
    assert first["utilization_gpu"] == [0, 10, 20, 30, 40]
    assert first["memory_used"] == [i * GIB for i in range(1, 6)]
    assert first["memory_total"] == 24 * GIB
    assert second["utilization_gpu"] == [0] * 5
    recent = history.series(2)
    assert recent["timestamps"] == [102.0, 103.0, 104.0]
    assert recent["gpus"][0]["utilization_gpu"] == [20, 30, 40]


def test_kernel_memory_is_summed_over_its_processes_and_gpus() -> None:
    """A kernel on two GPUs: one series; null before it was on a GPU."""
    me = os.getpid()
    gpu0, gpu1 = FakeGpu(), FakeGpu()
    nvml = FakeNvml([gpu0, gpu1])
    attributor = ProcessAttributor()
    records = [KernelRecord("k-1", environment_id="conda-vision-1", pid=me)]
    history = GpuHistory(window=60, interval=1)
    history.record(read(nvml, 10.0))  # nothing on the GPUs yet
    gpu0.processes = [FakeProcess(me, 3 * GIB, sm_util=60)]
    gpu1.processes = [FakeProcess(me, GIB, sm_util=30)]
    snapshot = read(nvml, 11.0)
    attributor.attribute(snapshot, records)
    history.record(snapshot)
    series = history.series(60)
    (kernel,) = series["kernels"]
    assert kernel == {
        "kernel_id": "k-1",
        "environment_id": "conda-vision-1",
        "gpus": [0, 1],
        "memory_used": [None, 4 * GIB],
        "utilization_sm": [None, 90],  # percent of one GPU, summed over both
    }


def test_samples_without_gpus_and_repeats_leave_no_point() -> None:
    history = GpuHistory(window=60, interval=1)
    history.record(GpuSnapshot.unavailable("no driver"))
    history.record(GpuSnapshot.sampling())
    assert len(history) == 0
    snapshot = read(FakeNvml([FakeGpu()]), 50.0)
    history.record(snapshot)
    history.record(snapshot)
    assert len(history) == 1
    history.record(read(FakeNvml([FakeGpu()]), 20.0))  # the clock went back
    assert [p.at for p in history.points()] == [20.0]


def test_a_window_of_zero_keeps_nothing() -> None:
    history = GpuHistory(window=0, interval=1)
    history.record(read(FakeNvml([FakeGpu()]), 1.0))
    assert len(history) == 0 and history.series(10)["timestamps"] == []


async def test_the_sampler_thread_fills_a_bounded_history() -> None:
    nvml = FakeNvml([FakeGpu()])
    sampler = GpuSampler(NvmlAdapter(nvml), interval=0.05, history_window=0.5)
    assert sampler.history.maxlen == 10
    try:
        await sampler.current(max_wait=10)
        for _ in range(200):
            if nvml.calls["nvmlDeviceGetCount"] > 25:
                break
            sampler.latest()  # keep demanding, as clients do
            await asyncio.sleep(0.02)
            assert len(sampler.history) <= 10
    finally:
        sampler.stop()
    assert nvml.calls["nvmlDeviceGetCount"] > 25
    assert len(sampler.history) == 10
    stamps = sampler.history.series(60)["timestamps"]
    assert stamps == sorted(stamps) and len(set(stamps)) == 10


def test_build_gpu_sampler_reads_the_history_window() -> None:
    config = GpuEnv(gpu_sample_interval=0.5, gpu_history_seconds=30)
    sampler = build_gpu_sampler(config, nvml=FakeNvml([FakeGpu()]))
    assert sampler.history.window == 30 and sampler.history.maxlen == 60
    sampler.sample_now()
    assert len(sampler.history) == 1


def test_series_are_built_once_per_sample() -> None:
    nvml = FakeNvml([FakeGpu()])
    history = GpuHistory(window=60, interval=1)
    history.record(read(nvml, 1.0))
    first = history.series(30)
    assert history.series(30) is first  # a second client between two samples
    assert history.series(10) is not first
    history.record(read(nvml, 2.0))
    fresh = history.series(30)
    assert fresh is not first and fresh["timestamps"] == [1.0, 2.0]
    assert first["timestamps"] == [1.0]  # what was answered stays as it was


def test_the_encoded_series_is_the_series() -> None:
    history = GpuHistory(window=60, interval=1)
    history.record(read(FakeNvml([FakeGpu(), FakeGpu()]), 1.0))
    assert json.loads(history.series_json(30)) == history.series(30)
