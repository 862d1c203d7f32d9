"""``jupyter gpuenv doctor`` end to end: a real conda prefix reporting a CUDA 12.1 PyTorch
build, found through a config file, checked by the installed command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_gpuenv.doctor.host_probe import read_gpu_status
from tests.support.fake_torch import TORCH_CU121


@pytest.fixture
def doctor(conda_prefix_factory, tmp_path):
    """Runs ``jupyter gpuenv --config <file> doctor ARGS``; returns (exit status, stdout)."""
    prefix = conda_prefix_factory(tmp_path / "envs" / "torch121", torch=TORCH_CU121)
    config = tmp_path / "jupyter_server_config.py"
    config.write_text(
        f"c.GpuEnv.conda_envs_dirs = [{str(prefix.parent)!r}]\n"
        "c.GpuEnv.venv_dirs = []\n"
        "c.GpuEnv.docker_images = {}\n"
        "c.GpuEnv.docker_label_discovery = False\n"
        "c.GpuEnv.docker_discover_pytorch_images = False\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
    }
    env.pop("CONDA_PREFIX", None)
    env.pop("CONDA_EXE", None)
    script = Path(sys.executable).with_name("jupyter-gpuenv")
    command = (
        [str(script)] if script.exists() else [sys.executable, "-m", "jupyter_gpuenv.cli.main"]
    )

    def run(*args: str, expect_report: bool = True) -> tuple[int, str]:
        result = subprocess.run(
            [*command, "--config", str(config), "doctor", *args],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            check=False,
        )
        assert "Traceback" not in result.stderr, result.stderr
        if expect_report:
            assert result.returncode in (0, 1) and result.stdout, result.stderr
            return result.returncode, result.stdout
        return result.returncode, result.stderr

    return run


def only_environment(report):
    (entry,) = report["environments"]
    assert (entry["name"], entry["kind"]) == ("torch121", "conda")
    assert entry["id"].startswith("conda-torch121-")
    return entry


def test_old_driver_marks_the_cuda_121_build_as_error_with_the_driver_fix(doctor):
    status, out = doctor("--json", "--driver-version", "470.82.01", "--compute-capability", "8.6")
    report = json.loads(out)
    assert status == 1
    assert report["host"]["hypothetical"] is True
    assert report["host"]["driver_version"] == "470.82.01"
    assert report["host"]["cuda_driver_version"] == "11.4"
    assert report["host"]["gpus"][0]["compute_capability"] == "8.6"
    entry = only_environment(report)
    assert entry["verdict"] == "error"
    errors = [f for f in entry["findings"] if f["severity"] == "error"]
    assert len(errors) == 1
    assert errors[0]["message"].startswith("CUDA 12.1 build needs driver ≥ 530.30.02")
    assert errors[0]["fix"] == (
        "upgrade the driver to ≥ 530.30.02, or install a PyTorch build for CUDA ≤ 11.4"
    )
    assert set(entry) == {"id", "name", "kind", "verdict", "findings"}
    assert all(set(f) == {"severity", "message", "fix"} for f in entry["findings"])


def test_driver_535_runs_the_cuda_121_build(doctor):
    status, out = doctor("--json", "--driver-version", "535.54.03", "--compute-capability", "8.6")
    entry = only_environment(json.loads(out))
    assert status == 0
    assert entry["verdict"] == "ok", entry
    messages = [f["message"] for f in entry["findings"]]
    assert any("driver 535.54.03 (CUDA 12.2)" in m for m in messages)
    assert any("sm_86 kernels (native)" in m for m in messages)


def test_one_environment_by_name_in_readable_text(doctor):
    status, out = doctor(
        "torch121", "--driver-version", "525.60.13", "--compute-capability", "10.0"
    )
    assert status == 1
    assert out.startswith(
        "Hypothetical host: driver 525.60.13 (CUDA 12.0); GPU 0, compute capability 10.0"
    )
    assert "torch121 (conda, conda-torch121-" in out
    assert "WARNING CUDA 12.1 build runs on driver 525.60.13 (CUDA 12.0) only through" in out
    assert "ERROR   GPU 0 (compute capability 10.0): no kernel image for sm_100" in out
    assert "fix: install a PyTorch build for sm_100 (CUDA ≥ 12.8)" in out
    assert out.rstrip().endswith("1 environment: 1 with errors, 0 with warnings, 0 ok.")


def test_unknown_environment_and_bad_flags_fail_with_a_message(doctor):
    status, err = doctor("nope", expect_report=False)
    assert status == 1
    assert err.strip() == "jupyter gpuenv: error: no environment with id or name 'nope'"
    status, err = doctor("--compute-capability", "ampere", expect_report=False)
    assert status == 1
    assert "compute capability must look like 8.6, not 'ampere'" in err


def test_real_host_without_flags(doctor):
    status, out = doctor("--json")
    report = json.loads(out)
    host = report["host"]
    assert host["hypothetical"] is False
    entry = only_environment(report)
    if read_gpu_status()["available"]:
        assert host["has_gpu"] and host["driver_version"]
    else:
        # This machine: no GPU. A CUDA build works, on the CPU only: a warning.
        assert host["has_gpu"] is False and host["reason"]
        assert status == 0
        assert entry["verdict"] == "warning"
        assert "it works on the CPU only" in entry["findings"][0]["message"]
