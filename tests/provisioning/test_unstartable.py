"""An environment whose start is known to fail gets no kernelspec, yet stays listed with
the reason: explicit GPU ids on this Docker engine, which has no NVIDIA support."""

from __future__ import annotations

import json

import pytest

from jupyter_gpuenv.docker.nvidia_runtime import detect_runtime
from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.provisioning.kernelspecs import has_kernel
from tests.provisioning.conftest import environment_named
from tests.support.server_config import server_config

pytestmark = pytest.mark.docker


@pytest.fixture
def jp_server_config(python_kernel_image):
    return server_config(
        docker_images={
            "pinned": {"image": python_kernel_image, "gpus": [0]},
            "anygpu": {"image": python_kernel_image, "gpus": "all"},
        }
    )


async def test_no_kernelspec_for_gpu_ids_without_nvidia_docker(jp_fetch, docker_client):
    if detect_runtime(docker_client).kind is not None:
        pytest.skip("this Docker engine has NVIDIA support: GPU ids can start")
    pinned = await environment_named(jp_fetch, "pinned")
    anygpu = await environment_named(jp_fetch, "anygpu")
    assert "kernels cannot start" in pinned["cannot_start"]
    assert pinned["cannot_start"] in pinned["problems"]
    assert anygpu["cannot_start"] is None  # starts, without GPUs
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert pinned["kernel_name"] not in specs
    assert anygpu["kernel_name"] in specs


def test_has_kernel_says_no_when_the_start_is_known_to_fail():
    env = Environment(
        id="docker-x-1",
        name="x",
        kind="docker",
        display_name="x (docker)",
        kernel_name="gpuenv-docker-x-1",
        location={"image": "img:1", "image_id": "sha256:1", "conda_env": None},
        python_version="3.11",
        ipykernel=True,
    )
    assert has_kernel(env)
    env.cannot_start = "GPUs 0 are configured but Docker has no NVIDIA GPU support"
    assert not has_kernel(env)
