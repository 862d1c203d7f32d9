"""binder/: what mybinder reads parses, and the environment setup really works (temp HOME)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.hub

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment minus Jupyter path overrides, with HOME moved."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.pop("GPUENV_DEMO_PIP", None)
    env.pop("GPUENV_DEMO_CONDA", None)
    env.update(HOME=str(home), **extra)
    return env


def test_repo2docker_files() -> None:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    assert "jupyterlab" in {r.name for r in requirements}
    assert (BINDER / "runtime.txt").read_text().strip().startswith("python-3.")

    post_build = BINDER / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR
    text = post_build.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "pip install --no-cache-dir ." in text
    assert "binder/setup_envs.sh" in text
    subprocess.run(["bash", "-n", str(post_build)], check=True, timeout=30)


def test_setup_envs_makes_a_working_venv_and_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home, PYTHON=sys.executable)
    script = str(BINDER / "setup_envs.sh")
    for _ in range(2):  # a second run changes nothing
        subprocess.run(["bash", script], env=env, check=True, timeout=300)

    venv = home / "envs" / "venvs" / "demo"
    assert (venv / "pyvenv.cfg").is_file()
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import ipykernel, sys; print(sys.prefix)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert Path(probe.stdout.strip()) == venv

    config_file = home / ".jupyter" / "jupyter_server_config.py"
    assert config_file.read_text().count("c.GpuEnv.venv_dirs") == 1

    # The configuration jupyter-gpuenv reads from that HOME.
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from jupyter_gpuenv.config_check import load_checked_config as load; "
            "c = load(); print(json.dumps([c.venv_dirs, c.conda_envs_dirs, "
            "c.docker_label_discovery]))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    venv_dirs, conda_dirs, discovery = json.loads(read.stdout)
    assert venv_dirs == [str(home / "envs" / "venvs")]
    assert conda_dirs == [str(home / "envs" / "conda")]
    assert discovery is False

    # What the catalog (server and CLI alike) makes of it: one venv with a kernel.
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter", "gpuenv", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    (demo,) = json.loads(listed.stdout)["environments"]
    assert (demo["name"], demo["kind"], demo["ipykernel"]) == ("demo", "venv", True)
    assert demo["location"]["prefix"] == str(venv)
    assert demo["problems"] == []
