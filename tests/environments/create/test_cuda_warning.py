"""Before solving, a CUDA version other than the host driver's is checked against the
doctor's driver table: the warning names the driver that CUDA needs and the one this host
has, in the CLI's output before the create starts and in the REST job from its start."""

from __future__ import annotations

from jupyter_gpuenv.environments.create.cuda import choose_cuda, driver_too_old
from tests.environments.create.test_create_cli import gpuenv
from tests.support.fake_nvml_module import fake_nvml_env

A100 = {"name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-0a0a0a0a", "cc": [8, 0]}


def host() -> str:
    return "12.2"


def test_the_warning_names_the_driver_the_table_asks_for() -> None:
    newer = driver_too_old(choose_cuda("12.4", "", host), "12.2", lambda: "535.104.05")
    assert newer is not None
    assert "CUDA 12.4 needs NVIDIA driver >= 550.54.14" in newer
    assert "this host has driver 535.104.05 (CUDA 12.2)" in newer
    assert "minor-version compatibility, driver >= 525.60.13" in newer  # 12.x on a 12.x driver

    major = driver_too_old(choose_cuda("13.0", "", host), "12.2", lambda: "535.104.05")
    assert major is not None and "needs NVIDIA driver >= 580.65.06" in major
    assert "minor-version compatibility" not in major  # another major: no way to run

    none = driver_too_old(choose_cuda("12.4", "", host), None, lambda: None)
    assert none is not None and "no NVIDIA driver" in none and ">= 550.54.14" in none
    assert driver_too_old(choose_cuda("12.1", "", host), "12.2", lambda: "535.104.05") is None
    assert driver_too_old(choose_cuda(None, "", host), "12.2", lambda: "535.104.05") is None


def test_the_cli_warns_before_it_solves(create_setup, tmp_path) -> None:
    nvml = fake_nvml_env(tmp_path / "nvml", "535.104.05", 12020, [A100])
    yml = create_setup.environment_yml(["gpuenv-lib=1.0"], name="newer")
    done = gpuenv(create_setup, "create", "-f", str(yml), "--cuda", "12.4", **nvml)
    lines = done.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if line.startswith("warning: "))
    creating = next(i for i, line in enumerate(lines) if line.startswith("Creating "))
    assert warning < creating, done.stderr
    assert "needs NVIDIA driver >= 550.54.14" in lines[warning]
    assert "this host has driver 535.104.05 (CUDA 12.2)" in lines[warning]
    assert done.stderr.count("needs NVIDIA driver") == 1  # said once, not again at the end

    same = create_setup.environment_yml(["gpuenv-lib=1.0"], name="same", file="same.yml")
    quiet = gpuenv(create_setup, "create", "-f", str(same), **nvml)  # the driver's own CUDA
    assert "warning:" not in quiet.stderr
    assert "(CUDA 12.2 (this host's driver))" in quiet.stderr
