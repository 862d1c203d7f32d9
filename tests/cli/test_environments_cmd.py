"""`jupyter gpuenv list` and `export` as a user runs them: the installed command, a config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

TORCH_CU121 = {"version": "2.9.0+cu121", "cuda": "12.1", "cudnn": 90100}


@pytest.fixture
def setup(tmp_path: Path, conda_prefix_factory, venv_factory) -> dict:
    vision = conda_prefix_factory(tmp_path / "envs" / "vision", torch=TORCH_CU121)
    twin = conda_prefix_factory(tmp_path / "envs" / "twin")
    venv_factory(tmp_path / "venvs" / "twin")
    venv_factory(tmp_path / "venvs" / "tools", ipykernel=False)
    config = tmp_path / "jupyter_server_config.py"
    config.write_text(
        f"c.GpuEnv.conda_envs_dirs = [{str(vision.parent)!r}]\n"
        f"c.GpuEnv.venv_dirs = [{str(tmp_path / 'venvs')!r}]\n"
        "c.GpuEnv.docker_label_discovery = False\n"
        "c.GpuEnv.docker_discover_pytorch_images = False\n",
        encoding="utf-8",
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "MAMBA"))}
    env.update(
        HOME=str(home),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_NO_CONFIG="1",
    )
    return {"config": config, "env": env, "vision": vision, "twin": twin, "tmp": tmp_path}


def gpuenv(setup: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = shutil.which("jupyter-gpuenv")
    assert command, "the jupyter-gpuenv script is installed with the package"
    done = subprocess.run(
        [command, "--config", str(setup["config"]), *args],
        capture_output=True,
        text=True,
        env=setup["env"],
        timeout=300,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_list_table(setup) -> None:
    out = gpuenv(setup, "list").stdout
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "KIND",
        "PYTHON",
        "PYTORCH",
        "CUDA",
        "IPYKERNEL",
        "DISPLAY",
        "NAME",
    ]
    vision = next(line for line in lines if line.startswith("conda-vision-"))
    assert vision.split()[1:6] == ["conda", vision.split()[2], "2.9.0+cu121", "12.1", "yes"]
    assert vision.endswith("vision (conda) · PyTorch 2.9 · CUDA 12.1")
    tools = next(line for line in lines if line.startswith("venv-tools-"))
    assert tools.split()[5] == "no"
    assert "Problems:" in lines
    assert any("ipykernel is not installed" in line and "venv-tools-" in line for line in lines)


def test_list_json_is_the_rest_payload(setup) -> None:
    data = json.loads(gpuenv(setup, "list", "--json").stdout)
    names = sorted((env["kind"], env["name"]) for env in data["environments"])
    assert names == [("conda", "twin"), ("conda", "vision"), ("venv", "tools"), ("venv", "twin")]
    vision = next(env for env in data["environments"] if env["name"] == "vision")
    assert vision["torch_version"] == "2.9.0+cu121" and vision["cuda_version"] == "12.1"
    assert "settings" not in vision
    # the probe cache is shared with the server through the Jupyter data dir
    assert (setup["tmp"] / "data" / "gpuenv" / "catalog-cache.json").is_file()


def test_export_by_name_and_id(setup) -> None:
    text = gpuenv(setup, "export", "vision").stdout
    data = yaml.safe_load(text)
    assert data["name"] == "vision"
    assert data["prefix"] == str(setup["vision"])
    assert any(d.startswith("pytorch=2.9.0=") for d in data["dependencies"])
    listing = json.loads(gpuenv(setup, "list", "--json").stdout)
    vision_id = next(e["id"] for e in listing["environments"] if e["name"] == "vision")
    assert gpuenv(setup, "export", vision_id).stdout == text
    target = setup["tmp"] / "out" / "env.yml"
    target.parent.mkdir()
    done = gpuenv(setup, "export", vision_id, "--no-builds", "-o", str(target))
    assert done.stdout == ""
    assert "pytorch=2.9.0" in yaml.safe_load(target.read_text())["dependencies"]
    history = yaml.safe_load(gpuenv(setup, "export", "vision", "--from-history").stdout)
    assert history["channels"] == ["defaults"]
    assert "pytorch=2.9.0" in history["dependencies"]


def test_export_errors(setup) -> None:
    done = gpuenv(setup, "export", "nothing-like-this", check=False)
    assert done.returncode == 1
    assert "no environment with id or name 'nothing-like-this'" in done.stderr
    ambiguous = gpuenv(setup, "export", "twin", check=False)
    assert ambiguous.returncode == 1
    assert "names several environments" in ambiguous.stderr
    assert "conda-twin-" in ambiguous.stderr and "venv-twin-" in ambiguous.stderr
