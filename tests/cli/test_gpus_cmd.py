"""``jupyter gpuenv gpus``: the real command on this GPU-less machine, and the table
it prints for a GPU host (fake NVML at the library boundary)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from jupyter_gpuenv.cli.gpus_cmd import NO_GPU_SENTENCE, run
from jupyter_gpuenv.config import GpuEnv
from tests.support.fake_nvml import NVML_ERROR_NOT_SUPPORTED, FakeGpu, FakeMig, FakeNvml
from tests.support.fake_nvml import FakeProcess as Proc


def jupyter_gpuenv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_gpuenv.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_json_on_this_machine() -> None:
    out = jupyter_gpuenv("gpus", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["available"] is False and body["state"] == "unavailable"
    assert "libnvidia-ml.so not found" in body["reason"]
    assert body["gpus"] == [] and "sampled_at" in body


def test_table_on_this_machine_is_one_sentence() -> None:
    out = jupyter_gpuenv("gpus")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{NO_GPU_SENTENCE}: libnvidia-ml.so not found")
    assert len(out.stdout.strip().splitlines()) == 1 and out.stderr == ""


def test_the_jupyter_entry_point_lists_the_subcommand() -> None:
    out = subprocess.run(
        ["jupyter", "gpuenv", "gpus", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "--json" in out.stdout and "--all" in out.stdout


def gpu_host() -> FakeNvml:
    mig = FakeMig(name="NVIDIA A100-SXM4-40GB MIG 3g.20gb", processes=[Proc(2**22 + 7)])
    return FakeNvml(
        [
            FakeGpu(
                name="NVIDIA GeForce RTX 3090",
                processes=[Proc(os.getpid(), 3 * 2**30)],
                errors={"nvmlDeviceGetTemperature": NVML_ERROR_NOT_SUPPORTED},
            ),
            FakeGpu(
                name="NVIDIA A100-SXM4-40GB",
                compute_capability=(8, 0),
                mig_mode=1,
                mig_slots=[mig],
            ),
        ],
        driver_version="550.54.15",
        cuda_driver_version=12040,
    )


def test_table_for_a_gpu_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argparse.Namespace(json=False, all=False), GpuEnv(), nvml=gpu_host()) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("NVIDIA driver 550.54.15 · CUDA driver 12.4 · 2 GPUs")
    row0 = next(line for line in lines if line.startswith("0 "))
    assert "NVIDIA GeForce RTX 3090" in row0 and "n/a" in row0  # temperature unsupported
    assert "2.0 GiB / 24.0 GiB" in row0 and "118 / 350 W" in row0 and "8.6" in row0
    row1 = next(line for line in lines if line.startswith("1 "))
    assert "enabled" in row1 and "8.0" in row1
    mine = next(line for line in lines if line.strip().startswith(str(os.getpid())))
    assert "3.0 GiB" in mine
    assert "MIG 0 NVIDIA A100-SXM4-40GB MIG 3g.20gb MIG-" in text
    # The vanished process on the MIG slice is nobody's: hidden, and counted.
    assert "(1 processes of other users not shown)" in text


def test_all_shows_every_process(capsys: pytest.CaptureFixture[str]) -> None:
    run(argparse.Namespace(json=True, all=True), GpuEnv(), nvml=gpu_host())
    body = json.loads(capsys.readouterr().out)
    assert [len(g["processes"]) for g in body["gpus"]] == [1, 1]
    assert body["gpus"][1]["processes"][0]["mig_device_uuid"].startswith("MIG-")
    assert body["gpus"][0]["temperature"] is None
