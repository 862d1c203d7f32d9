"""Reading the real host: NVML through the GPU adapter (fake NVML at the library boundary,
and the real one of this GPU-less machine) and Docker's runtimes from a real engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jupyter_gpuenv.doctor.host_probe import HostProbe, docker_nvidia_runtime, read_gpu_status
from jupyter_gpuenv.gpu.grant import read_user_grant
from jupyter_gpuenv.kernel.compatibility import evaluate
from jupyter_gpuenv.kernel.nvml import NvmlAdapter
from tests.support.fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeGpu, FakeNvml

CU121 = {
    "kind": "conda",
    "torch_version": "2.9.0+cu121",
    "cuda_version": "12.1",
    "cudnn_version": "90100",
    "torch_arch_list": ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"],
}


def probe_over(nvml: FakeNvml, runtime: bool | None = None, ttl: float = 60.0) -> HostProbe:
    adapter = NvmlAdapter(nvml=nvml)
    return HostProbe(lambda: read_gpu_status(adapter), lambda: runtime, ttl=ttl)


def test_host_from_nvml_drives_the_checks():
    nvml = FakeNvml(
        gpus=[
            FakeGpu(name="NVIDIA A10", compute_capability=(8, 6)),
            FakeGpu(name="NVIDIA B200", compute_capability=(10, 0)),
        ],
        driver_version="535.54.03",
        cuda_driver_version=12020,
    )
    host = probe_over(nvml, runtime=True)()
    assert host.driver_version == "535.54.03"
    assert host.cuda_driver_version == "12.2"
    assert [g.compute_capability for g in host.gpus] == ["8.6", "10.0"]
    assert host.has_gpu and not host.hypothetical and host.docker_nvidia_runtime is True
    result = evaluate(CU121, host)
    assert result.verdict == "error"
    severities = {f.message.split(" (")[0]: f.severity for f in result.findings}
    assert severities["GPU 0"] == "ok"
    assert severities["GPU 1"] == "error"
    json.dumps(host.to_json())  # serialisable as the report's "host"


def test_driver_without_library_is_a_host_without_gpu_and_says_why():
    host = probe_over(FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND))()
    assert host.has_gpu is False
    assert "libnvidia-ml.so not found" in host.reason
    result = evaluate(CU121, host)
    assert result.verdict == "warning"
    assert "CPU only" in result.headline()


def test_this_machines_real_nvml():
    # The real pynvml on this machine: without a GPU, it must say why, never raise.
    status = read_gpu_status()
    host = HostProbe(lambda: status, lambda: None)()
    if status["available"]:
        assert host.has_gpu and host.driver_version
    else:
        assert host.has_gpu is False and host.reason


def test_host_is_read_once_per_ttl():
    nvml = FakeNvml(gpus=[FakeGpu()], driver_version="550.54.15")
    probe = probe_over(nvml, ttl=3600)
    first = probe()
    assert probe() is first
    assert nvml.calls["nvmlSystemGetDriverVersion"] == 1
    probe.invalidate()
    assert probe() is not first
    assert nvml.calls["nvmlSystemGetDriverVersion"] == 2


@pytest.mark.docker
def test_docker_runtimes_of_the_real_engine(docker_client):
    info = docker_client.info()
    expected = (
        "nvidia" in (info.get("Runtimes") or {})
        or info.get("DefaultRuntime") == "nvidia"
        or shutil.which("nvidia-container-runtime-hook") is not None
        or any(
            "nvidia.com/gpu" in path.read_text(errors="replace")
            for folder in info.get("CDISpecDirs") or []
            for path in Path(folder).glob("*")
            if path.is_file()
        )
    )
    assert docker_nvidia_runtime(docker_client) is expected
    assert docker_nvidia_runtime() is expected  # its own client, from the environment


@pytest.mark.docker
def test_nvidia_runtime_and_cdi_spec_in_docker_info(docker_client, tmp_path):
    info = docker_client.info()

    class InfoWith:
        """The real engine's ``docker info`` with one field changed."""

        def __init__(self, **changes):
            self.changes = changes

        def info(self):
            return {**info, **self.changes}

    runtimes = {**(info.get("Runtimes") or {}), "nvidia": {"path": "nvidia-container-runtime"}}
    assert docker_nvidia_runtime(InfoWith(Runtimes=runtimes)) is True
    spec = tmp_path / "nvidia.yaml"
    spec.write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n")
    assert docker_nvidia_runtime(InfoWith(CDISpecDirs=[str(tmp_path)])) is True


def test_docker_that_does_not_answer_is_unknown(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    assert docker_nvidia_runtime() is None


def test_a_hub_users_grant_narrows_the_gpus_checked():
    a10, b200 = (
        FakeGpu(name="NVIDIA A10", compute_capability=(8, 6)),
        FakeGpu(name="NVIDIA B200", compute_capability=(10, 0)),
    )
    nvml = FakeNvml(gpus=[a10, b200], driver_version="570.124.06", cuda_driver_version=12080)
    adapter = NvmlAdapter(nvml=nvml)

    def probe(value: str) -> HostProbe:
        grant = read_user_grant("GPUENV_GPUS", {"GPUENV_GPUS": value})
        return HostProbe(lambda: read_gpu_status(adapter), lambda: None, grant=grant)

    # The B200 (sm_100) is not the user's: the cu121 build is fine on their A10.
    assert evaluate(CU121, probe("0")()).verdict == "ok"
    assert evaluate(CU121, probe(b200.uuid)()).verdict == "error"
    assert evaluate(CU121, probe("all")()).verdict == "error"
    nothing = probe("none")()
    assert nothing.has_gpu is False
    assert nothing.reason == "no GPU is granted to this user (GPUENV_GPUS)"
    assert "no GPU is granted to this user" in evaluate(CU121, nothing).headline()
