"""Prometheus text of a sample: parses with prometheus_client, values and labels as NVML said."""

from __future__ import annotations

import os

from prometheus_client.parser import text_string_to_metric_families

from jupyter_gpuenv.gpu.attribution import KernelRecord, ProcessAttributor
from jupyter_gpuenv.gpu.metrics import escape_label_value, render_metrics
from jupyter_gpuenv.kernel.gpu_snapshot import GpuSnapshot
from jupyter_gpuenv.kernel.nvml import NvmlAdapter
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess

GIB = 2**30


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Family name -> [(labels, value)]; also checks every family has HELP and TYPE."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation and family.type == "gauge", family.name
        out[family.name] = [(s.labels, s.value) for s in family.samples]
    return out


def test_gpu_and_kernel_figures_match_the_fake_nvml() -> None:
    me = os.getpid()
    stranger = 2**22 + 99
    gpu0 = FakeGpu(
        name="NVIDIA A100-SXM4-80GB",
        memory_total=80 * GIB,
        memory_used=20 * GIB,
        utilization=(64, 41),
        temperature=58,
        power_usage_mw=231_000,
        processes=[FakeProcess(me, 3 * GIB, sm_util=52), FakeProcess(stranger, GIB, sm_util=9)],
    )
    gpu1 = FakeGpu(memory_total=24 * GIB, memory_used=GIB, utilization=(0, 0))
    snapshot = NvmlAdapter(FakeNvml([gpu0, gpu1])).read()
    ProcessAttributor().attribute(
        snapshot, [KernelRecord("k-1", environment_id="conda-vision-1", pid=me)]
    )
    metrics = parse(render_metrics(snapshot, server_user="alice"))
    assert metrics["gpuenv_gpus_available"] == [({}, 1.0)]
    assert metrics["gpuenv_gpus"] == [({}, 2.0)]
    gpu_labels = {"gpu": "0", "uuid": gpu0.uuid, "name": "NVIDIA A100-SXM4-80GB"}
    assert metrics["gpuenv_gpu_memory_used_bytes"][0] == (gpu_labels, 20 * GIB)
    assert metrics["gpuenv_gpu_memory_total_bytes"][0] == (gpu_labels, 80 * GIB)
    assert metrics["gpuenv_gpu_utilization_percent"] == [
        (gpu_labels, 64.0),
        ({"gpu": "1", "uuid": gpu1.uuid, "name": gpu1.name}, 0.0),
    ]
    assert metrics["gpuenv_gpu_memory_utilization_percent"][0] == (gpu_labels, 41.0)
    assert metrics["gpuenv_gpu_temperature_celsius"][0] == (gpu_labels, 58.0)
    assert metrics["gpuenv_gpu_power_watts"][0] == (gpu_labels, 231.0)
    kernel = {"kernel_id": "k-1", "environment": "conda-vision-1", "user": "alice", "gpu": "0"}
    # The stranger's process belongs to no kernel: only the kernel has a series.
    assert metrics["gpuenv_kernel_gpu_memory_used_bytes"] == [(kernel, 3 * GIB)]
    assert metrics["gpuenv_kernel_gpu_utilization_percent"] == [(kernel, 52.0)]
    assert metrics["gpuenv_kernel_gpu_processes"] == [(kernel, 1.0)]


def test_label_values_are_escaped() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    me = os.getpid()
    odd = 'lab "x"\\y\nz'
    gpu = FakeGpu(name=odd, processes=[FakeProcess(me, GIB)])
    snapshot = NvmlAdapter(FakeNvml([gpu])).read()
    ProcessAttributor().attribute(snapshot, [KernelRecord("k-2", environment_id=odd, pid=me)])
    metrics = parse(render_metrics(snapshot, server_user=odd))
    ((labels, value),) = metrics["gpuenv_kernel_gpu_memory_used_bytes"]
    assert labels["environment"] == odd and labels["user"] == odd and value == GIB
    assert metrics["gpuenv_gpu_memory_used_bytes"][0][0]["name"] == odd


def test_no_gpu_is_reported_not_invented() -> None:
    text = render_metrics(GpuSnapshot.unavailable("no driver"))
    metrics = parse(text)
    assert metrics["gpuenv_gpus_available"] == [({}, 0.0)]
    assert metrics["gpuenv_gpus"] == [({}, 0.0)]
    assert metrics["gpuenv_gpu_memory_used_bytes"] == []
    assert text.endswith("\n")


def test_a_figure_nvml_refuses_is_left_out() -> None:
    gpu = FakeGpu(errors={"nvmlDeviceGetTemperature": 3, "nvmlDeviceGetPowerUsage": 4})
    metrics = parse(render_metrics(NvmlAdapter(FakeNvml([gpu])).read()))
    assert metrics["gpuenv_gpu_temperature_celsius"] == []
    assert metrics["gpuenv_gpu_power_watts"] == []
    assert len(metrics["gpuenv_gpu_memory_used_bytes"]) == 1
