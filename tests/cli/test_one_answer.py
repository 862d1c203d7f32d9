"""The CLI and a real server with the same configuration answer the same: ``list --json``
is the REST listing (``compatibility`` and the Docker GPU problems included) and ``doctor``
judges the same host, narrowed to the user's GPU grant. The host is a fake NVML (two GPUs,
one too new for the build) in both processes; Docker is the real engine, which has no
NVIDIA support here."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.provisioning.server_process import start_server
from tests.support.fake_nvml_module import fake_nvml_env
from tests.support.fake_torch import TORCH_CU121

pytestmark = pytest.mark.docker

GRANT = {"GPUENV_GPUS": "1"}


@pytest.fixture
def same_config(tmp_path, conda_prefix_factory, python_kernel_image):
    """A server and a CLI environment over one config, one fake host and one grant."""
    prefix = conda_prefix_factory(tmp_path / "envs" / "torch121", torch=TORCH_CU121)
    nvml = fake_nvml_env(
        tmp_path / "fake-nvml",
        driver_version="550.54.15",
        cuda_driver_version=12040,
        gpus=[
            {"name": "NVIDIA B200", "uuid": "GPU-0000-fake-b200", "cc": [10, 0]},
            {"name": "NVIDIA A10", "uuid": "GPU-0001-fake-a10", "cc": [8, 6]},
        ],
    )
    gpuenv = {
        "conda_envs_dirs": [str(prefix.parent)],
        "docker_images": {"pinned": {"image": python_kernel_image, "gpus": [0]}},
    }
    root = tmp_path / "notebooks"
    root.mkdir()
    server = start_server(root, gpuenv, extra_env={**nvml, **GRANT})
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "JPY_", "CONDA", "VIRTUAL_ENV"))
    }
    env.update(
        HOME=str(server.home),
        JUPYTER_CONFIG_DIR=str(server.home / "config"),
        JUPYTER_DATA_DIR=str(server.home / "data"),
        JUPYTER_RUNTIME_DIR=str(server.home / "runtime"),
        JUPYTER_PLATFORM_DIRS="0",
        **nvml,
        **GRANT,
    )
    try:
        yield server, env
    finally:
        server.stop()


def cli(env: dict[str, str], *args: str) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_gpuenv.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=str(Path(env["HOME"])),
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def rest(server, path: str) -> dict:
    status, body = asyncio.run(server.request("GET", path))
    assert status == 200, body
    return body


def test_cli_list_json_is_the_rest_listing(same_config):
    server, env = same_config
    over_rest = rest(server, "/gpuenv/api/environments")
    status, over_cli = cli(env, "list", "--json")
    assert status == 0
    assert over_cli == over_rest
    by_name = {e["name"]: e for e in over_cli["environments"]}
    pinned, torch121 = by_name["pinned"], by_name["torch121"]
    # the Docker GPU problem, as a reason not to offer a kernel
    assert any("kernels cannot start" in p for p in pinned["problems"]), pinned
    assert pinned["cannot_start"] and "kernels cannot start" in pinned["cannot_start"]
    # the doctor's verdict for the granted GPU (an A10, 8.6: the build has sm_86)
    assert torch121["compatibility"]["verdict"] == "ok", torch121["compatibility"]


def test_cli_doctor_applies_the_grant_like_rest(same_config):
    server, env = same_config
    over_rest = rest(server, "/gpuenv/api/doctor")
    status, over_cli = cli(env, "doctor", "--json")
    assert over_cli == over_rest
    assert [g["index"] for g in over_cli["host"]["gpus"]] == [1]
    (entry,) = [e for e in over_cli["environments"] if e["name"] == "torch121"]
    assert entry["verdict"] == "ok"  # the B200 (no sm_100 in the build) is not the user's
    ungranted = {**env, "GPUENV_GPUS": "all"}
    status, everything = cli(ungranted, "doctor", "--json")
    assert [g["index"] for g in everything["host"]["gpus"]] == [0, 1]
    (entry,) = [e for e in everything["environments"] if e["name"] == "torch121"]
    assert entry["verdict"] == "error" and status == 1


def test_global_options_after_the_subcommand(same_config, tmp_path):
    """``jupyter gpuenv doctor --config FILE``: the file after the subcommand is read."""
    _server, env = same_config
    extra = tmp_path / "only_pinned.py"
    extra.write_text("c.GpuEnv.conda_envs_dirs = []\n", encoding="utf-8")
    _status, report = cli(env, "doctor", "--json", "--config", str(extra))
    assert [e["name"] for e in report["environments"]] == ["pinned"]
    _status, listing = cli(env, "list", "--json", "--config", str(extra))
    assert [e["name"] for e in listing["environments"]] == ["pinned"]
