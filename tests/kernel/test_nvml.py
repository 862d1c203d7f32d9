"""NvmlAdapter against a fake NVML at the library boundary, and against the real pynvml.

The machine running these tests has no GPU: the fake covers what a GPU host answers;
the real pynvml covers what this host answers (NVML cannot start).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_gpuenv.kernel import nvml as nvml_adapter
from jupyter_gpuenv.kernel.gpu_snapshot import GpuSnapshot, format_cuda_version, snapshot_from_json
from jupyter_gpuenv.kernel.nvml import NvmlAdapter, init_failure_reason
from tests.support.fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    FakeGpu,
    FakeMig,
    FakeNvml,
    FakeProcess,
)

REPO = Path(__file__).resolve().parents[2]
GiB = 2**30


def test_reads_every_metric_of_every_gpu() -> None:
    gpu0 = FakeGpu(
        name="NVIDIA GeForce RTX 3090",
        memory_total=24 * GiB,
        memory_used=2 * GiB,
        memory_reserved=300 * 2**20,
        utilization=(35, 12),
        temperature=51,
        power_usage_mw=118_500,
        power_limit_mw=350_000,
        compute_capability=(8, 6),
        processes=[FakeProcess(4321, 1 * GiB), FakeProcess(1234, 512 * 2**20)],
    )
    gpu1 = FakeGpu(name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), mig_mode=0)
    nvml = FakeNvml([gpu0, gpu1], driver_version="550.54.15", cuda_driver_version=12040)

    snap = NvmlAdapter(nvml).read()

    assert snap.available and snap.state == "ok" and snap.reason is None
    assert snap.driver_version == "550.54.15"
    assert snap.cuda_driver_version == "12.4"
    assert snap.gpu_count == 2 and [g.index for g in snap.gpus] == [0, 1]
    first = snap.gpus[0]
    assert first.uuid == gpu0.uuid and first.name == "NVIDIA GeForce RTX 3090"
    # v2 memory: reserved memory is reported apart from used.
    assert first.memory_total == 24 * GiB
    assert first.memory_used == 2 * GiB
    assert first.memory_reserved == 300 * 2**20
    assert first.memory_free == 24 * GiB - 2 * GiB - 300 * 2**20
    assert (first.utilization_gpu, first.utilization_memory) == (35, 12)
    assert first.temperature == 51
    assert (first.power_draw, first.power_limit) == (118.5, 350.0)
    assert first.compute_capability == "8.6"
    assert first.mig_mode is None  # consumer GPU: MIG not supported
    assert [(p.pid, p.used_memory) for p in first.processes] == [
        (1234, 512 * 2**20),
        (4321, 1 * GiB),
    ]
    assert snap.gpus[1].mig_mode == "disabled" and snap.gpus[1].compute_capability == "9.0"
    assert nvml.calls["nvmlDeviceGetMemoryInfo"] == 2


def test_falls_back_to_v1_memory_when_the_driver_lacks_v2() -> None:
    nvml = FakeNvml([FakeGpu(memory_used=2 * GiB, memory_reserved=GiB // 4)], memory_v2=False)
    adapter = NvmlAdapter(nvml)
    first = adapter.read().gpus[0]
    assert first.memory_used == 2 * GiB + GiB // 4  # v1 counts reserved memory as used
    assert first.memory_reserved is None
    calls_after_first = nvml.calls["nvmlDeviceGetMemoryInfo"]
    adapter.read()
    # The v2 attempt is not repeated on every sample once the driver said no.
    assert nvml.calls["nvmlDeviceGetMemoryInfo"] - calls_after_first == 1


@pytest.mark.parametrize("code", [NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION])
def test_a_refused_metric_is_null_and_the_rest_still_reads(code: int) -> None:
    refused = {
        "nvmlDeviceGetTemperature": code,
        "nvmlDeviceGetPowerUsage": code,
        "nvmlDeviceGetEnforcedPowerLimit": code,
        "nvmlDeviceGetUtilizationRates": code,
        "nvmlDeviceGetComputeRunningProcesses": code,
    }
    nvml = FakeNvml([FakeGpu(errors=refused, processes=[FakeProcess(77)]), FakeGpu()])
    snap = NvmlAdapter(nvml).read()
    first, second = snap.gpus
    assert snap.available
    assert first.temperature is None and first.power_draw is None and first.power_limit is None
    assert first.utilization_gpu is None and first.utilization_memory is None
    assert first.processes == []
    assert first.memory_total == 24 * GiB and first.compute_capability == "8.6"
    assert second.temperature == 51 and second.power_draw == 118.5


def test_a_gpu_whose_handle_cannot_be_opened_is_listed_without_metrics() -> None:
    nvml = FakeNvml(
        [FakeGpu(errors={"nvmlDeviceGetHandleByIndex": NVML_ERROR_GPU_IS_LOST}), FakeGpu()]
    )
    snap = NvmlAdapter(nvml).read()
    assert snap.available and snap.gpu_count == 2
    assert snap.gpus[0].index == 0 and snap.gpus[0].uuid is None and snap.gpus[0].name is None
    assert snap.gpus[1].name == "NVIDIA GeForce RTX 3090"


def test_per_process_sm_utilization_since_the_previous_read() -> None:
    busy, idle = FakeProcess(11, sm_util=70), FakeProcess(12)
    gpu = FakeGpu(processes=[busy, idle])
    nvml = FakeNvml([gpu, FakeGpu(processes=[FakeProcess(13)])])
    adapter = NvmlAdapter(nvml)
    first = adapter.read()
    assert [(p.pid, p.utilization_sm) for p in first.gpus[0].processes] == [(11, 70), (12, 0)]
    # No process of GPU 1 ran a kernel: NVML has no sample (NOT_FOUND), which is 0 %.
    assert first.gpus[1].processes[0].utilization_sm == 0
    busy.sm_util = 25
    assert adapter.read().gpus[0].processes[0].utilization_sm == 25


def test_per_process_utilization_nvml_refuses_is_unknown() -> None:
    gpu = FakeGpu(
        processes=[FakeProcess(11, sm_util=70)],
        errors={"nvmlDeviceGetProcessUtilization": NVML_ERROR_NOT_SUPPORTED},
    )
    (proc,) = NvmlAdapter(FakeNvml([gpu])).read().gpus[0].processes
    assert proc.utilization_sm is None and proc.used_memory == 512 * 2**20


def test_mig_devices_and_their_processes() -> None:
    slice_a = FakeMig(gpu_instance_id=1, compute_instance_id=0, processes=[FakeProcess(501)])
    slice_b = FakeMig(gpu_instance_id=2, compute_instance_id=0, processes=[FakeProcess(502)])
    gpu = FakeGpu(
        name="NVIDIA A100-SXM4-40GB",
        compute_capability=(8, 0),
        mig_mode=1,
        mig_slots=[slice_a, None, slice_b],  # slot 1 empty: NVML answers NotFound
    )
    snap = NvmlAdapter(FakeNvml([gpu])).read()
    device = snap.gpus[0]
    assert device.mig_mode == "enabled"
    assert [m.index for m in device.mig_devices] == [0, 2]
    assert [m.uuid for m in device.mig_devices] == [slice_a.uuid, slice_b.uuid]
    assert device.mig_devices[0].memory_total == 5 * GiB
    assert device.mig_devices[1].gpu_instance_id == 2
    assert {p.pid: p.mig_device_uuid for p in device.processes} == {
        501: slice_a.uuid,
        502: slice_b.uuid,
    }
    assert device.all_uuids() == [gpu.uuid, slice_a.uuid, slice_b.uuid]


def test_mig_processes_still_listed_when_the_parent_refuses_them() -> None:
    slice_a = FakeMig(processes=[FakeProcess(601, 3 * GiB)])
    gpu = FakeGpu(
        mig_mode=1,
        mig_slots=[slice_a],
        errors={"nvmlDeviceGetComputeRunningProcesses": NVML_ERROR_NO_PERMISSION},
    )
    snap = NvmlAdapter(FakeNvml([gpu])).read()
    # The error is per handle: the MIG handle (a FakeMig) still answers.
    assert [(p.pid, p.used_memory, p.mig_device_uuid) for p in snap.gpus[0].processes] == [
        (601, 3 * GiB, slice_a.uuid)
    ]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (NVML_ERROR_LIBRARY_NOT_FOUND, "libnvidia-ml.so not found"),
        (NVML_ERROR_DRIVER_NOT_LOADED, "NVIDIA driver not loaded"),
        (NVML_ERROR_LIB_RM_VERSION_MISMATCH, "driver/library version mismatch (reboot"),
        (NVML_ERROR_NO_PERMISSION, "no permission"),
        (NVML_ERROR_FUNCTION_NOT_FOUND, "driver is too old"),
        (NVML_ERROR_UNKNOWN, "NVML could not start: NVML error 999"),
    ],
)
def test_nvml_that_cannot_start_gives_a_reason(code: int, words: str) -> None:
    snap = NvmlAdapter(FakeNvml([FakeGpu()], init_error=code)).read()
    assert not snap.available and snap.state == "unavailable"
    assert words in (snap.reason or "")
    assert snap.gpus == [] and snap.sampled_at is not None


def test_no_devices_is_unavailable_with_the_driver_named() -> None:
    snap = NvmlAdapter(FakeNvml([], driver_version="535.54.03")).read()
    assert not snap.available
    assert snap.reason == "no NVIDIA GPU found (driver 535.54.03 is loaded but reports no devices)"
    assert snap.driver_version == "535.54.03" and snap.cuda_driver_version == "12.4"


def test_nvml_is_initialised_once_and_retried_after_a_failure() -> None:
    nvml = FakeNvml([FakeGpu()], init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    adapter = NvmlAdapter(nvml)
    assert not adapter.read().available
    nvml.init_error = None  # the driver got loaded
    assert adapter.read().available
    adapter.read()
    assert nvml.calls["nvmlInit"] == 2 and nvml.initialized == 1
    adapter.close()
    assert nvml.initialized == 0 and nvml.calls["nvmlShutdown"] == 1
    adapter.close()
    assert nvml.calls["nvmlShutdown"] == 1


def test_cuda_driver_version_falls_back_to_v1() -> None:
    nvml = FakeNvml(
        [FakeGpu()],
        cuda_driver_version=12020,
        errors={"nvmlSystemGetCudaDriverVersion_v2": NVML_ERROR_FUNCTION_NOT_FOUND},
    )
    assert NvmlAdapter(nvml).read().cuda_driver_version == "12.2"


def test_format_cuda_version() -> None:
    assert format_cuda_version(12040) == "12.4"
    assert format_cuda_version(11080) == "11.8"
    assert format_cuda_version(13000) == "13.0"
    assert format_cuda_version(0) is None and format_cuda_version(None) is None


def test_snapshot_json_round_trip() -> None:
    gpu = FakeGpu(mig_mode=1, mig_slots=[FakeMig(processes=[FakeProcess(9)])])
    snap = NvmlAdapter(FakeNvml([gpu])).read()
    data = snap.to_json()
    assert set(data) >= {
        "available",
        "reason",
        "driver_version",
        "cuda_driver_version",
        "gpus",
        "sampled_at",
    }
    assert data["gpus"][0]["processes"][0]["pid"] == 9
    assert data["gpus"][0]["mig_devices"][0]["uuid"].startswith("MIG-")
    assert snapshot_from_json(data) == snap


def test_real_pynvml_on_this_gpu_less_machine() -> None:
    """The real library path: NVML cannot start here, and says why in words."""
    snap = NvmlAdapter().read()
    assert isinstance(snap, GpuSnapshot)
    assert not snap.available and snap.gpus == []
    assert snap.reason and "libnvidia-ml.so not found" in snap.reason
    assert snap.reason == init_failure_reason(NVML_ERROR_LIBRARY_NOT_FOUND, "")


KERNEL_SIDE_SCRIPT = """
import json
from jupyter_gpuenv.kernel.nvml import NvmlAdapter, load_pynvml
module = load_pynvml()
print(json.dumps({
    "module": getattr(module, "__file__", None),
    "reason": NvmlAdapter().read().reason,
}))
"""


def _python_without_pynvml(tmp_path: Path) -> Path:
    """A real venv (no site packages, hence no nvidia-ml-py) to run kernel-side code in."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True
    )
    return tmp_path / "venv" / "bin" / "python"


def test_kernel_side_without_nvidia_ml_py(tmp_path: Path) -> None:
    python = _python_without_pynvml(tmp_path)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [str(python), "-c", KERNEL_SIDE_SCRIPT], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert '"module": null' in out.stdout
    assert nvml_adapter.NO_BINDINGS_REASON in out.stdout


def test_kernel_side_falls_back_to_the_shipped_pynvml(tmp_path: Path) -> None:
    """$JUPYTER_GPUENV_KERNEL_SIDE/fallback/pynvml.py is used when pynvml is missing."""
    import pynvml

    python = _python_without_pynvml(tmp_path)
    side = tmp_path / "kernel-side"
    (side / "fallback").mkdir(parents=True)
    (side / "fallback" / "pynvml.py").write_text(Path(pynvml.__file__).read_text())
    env = {
        "PYTHONPATH": str(REPO),
        "PATH": "/usr/bin:/bin",
        nvml_adapter.KERNEL_SIDE_ENV: str(side),
    }
    out = subprocess.run(
        [str(python), "-c", KERNEL_SIDE_SCRIPT], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert str(side / "fallback" / "pynvml.py") in out.stdout
    assert "libnvidia-ml.so not found" in out.stdout  # the real library tried, and said why
