"""``jupyter gpuenv cluster node-config``: GPUs and MIG devices of a host (fake NVML at the
library boundary) as Swarm generic resources, and the real command on this GPU-less host."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from jupyter_gpuenv.cli.cluster_cmd import run
from jupyter_gpuenv.config import GpuEnv
from tests.support.fake_nvml import FakeGpu, FakeMig, FakeNvml

NODE_CONFIG = argparse.Namespace(cluster_command="node-config")


def test_gpus_and_mig_devices_become_generic_resources(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain = FakeGpu(name="NVIDIA GeForce RTX 3090")
    migs = [FakeMig(gpu_instance_id=1), None, FakeMig(gpu_instance_id=2)]
    a100 = FakeGpu(name="NVIDIA A100-SXM4-40GB", mig_mode=1, mig_slots=migs)
    no_mig_yet = FakeGpu(name="NVIDIA A100-SXM4-40GB", mig_mode=0)
    nvml = FakeNvml([plain, a100, no_mig_yet])
    assert run(NODE_CONFIG, GpuEnv(), nvml=nvml) == 0
    out = capsys.readouterr()
    snippet = json.loads(out.out)
    assert snippet["node-generic-resources"] == [
        f"NVIDIA-GPU={plain.uuid}",
        f"NVIDIA-GPU={migs[0].uuid}",
        f"NVIDIA-GPU={migs[2].uuid}",
        f"NVIDIA-GPU={no_mig_yet.uuid}",
    ]
    assert snippet["default-runtime"] == "nvidia"
    assert snippet["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert 'swarm-resource = "DOCKER_RESOURCE_NVIDIA-GPU"' in out.err


def test_the_resource_kind_follows_the_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    gpu = FakeGpu()
    config = GpuEnv(swarm_gpu_resource="gpu")
    assert run(NODE_CONFIG, config, nvml=FakeNvml([gpu])) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["node-generic-resources"] == [f"gpu={gpu.uuid}"]
    assert 'swarm-resource = "DOCKER_RESOURCE_gpu"' in out.err


def test_on_this_gpu_less_host_it_says_why() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_gpuenv.cli.main", "cluster", "node-config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and out.stdout == ""
    assert "no NVIDIA GPU to declare: libnvidia-ml.so not found" in out.stderr
