"""A start the doctor knows will fail on this host is refused with its message and fix;
with ``block_incompatible = False`` it starts and the kernel's first output warns.

The host is a fake NVML (at the library boundary) in a real server process: driver
470.82.01 (CUDA 11.4) and an 8.6 GPU, too old for the conda env's CUDA 12.1 PyTorch build.
The kernel is a real local ipykernel of a real conda prefix.
"""

from __future__ import annotations

import pytest

from tests.support.fake_nvml_module import fake_nvml_env
from tests.support.fake_torch import TORCH_CU121

DRIVER_FIX = "upgrade the driver to ≥ 530.30.02"


@pytest.fixture
def old_driver_host(tmp_path, conda_prefix_factory):
    prefix = conda_prefix_factory(tmp_path / "envs" / "torch121", torch=TORCH_CU121)
    nvml = fake_nvml_env(
        tmp_path / "fake-nvml",
        driver_version="470.82.01",
        cuda_driver_version=11040,
        gpus=[{"name": "NVIDIA A10", "uuid": "GPU-0000-fake-a10", "cc": [8, 6]}],
    )
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    return {"conda_envs_dirs": [str(prefix.parent)]}, nvml, notebooks


async def torch121(server) -> dict:
    status, listing = await server.request("GET", "/gpuenv/api/environments")
    assert status == 200
    (env,) = [e for e in listing["environments"] if e["name"] == "torch121"]
    assert env["compatibility"]["verdict"] == "error", env["compatibility"]
    return env


async def test_refused_with_the_doctors_message_and_fix(server_processes, old_driver_host):
    gpuenv, nvml, notebooks = old_driver_host
    server = server_processes(notebooks, gpuenv, extra_env=nvml)
    env = await torch121(server)
    status, body = await server.request("POST", "/api/kernels", {"name": env["kernel_name"]})
    assert status == 403, body
    message = body["message"]
    assert DRIVER_FIX in message and "block_incompatible" in message
    assert "Traceback" not in message
    assert await server.request("GET", "/api/kernels") == (200, [])


async def test_started_with_a_warning_when_not_blocking(server_processes, old_driver_host):
    gpuenv, nvml, notebooks = old_driver_host
    server = server_processes(notebooks, {**gpuenv, "block_incompatible": False}, extra_env=nvml)
    env = await torch121(server)
    status, kernel = await server.request("POST", "/api/kernels", {"name": env["kernel_name"]})
    assert status == 201, kernel
    status, described = await server.request("GET", f"/gpuenv/api/kernels/{kernel['id']}")
    assert status == 200 and DRIVER_FIX in described["start_warning"], described
    assert described["start_warning"].startswith("torch121 (conda)")
    assert "will not work on this host" in described["start_warning"]
    ws = await server.channels(kernel["id"])
    try:
        first = await ws.run("print('first cell')")
        second = await ws.run("print('second cell')")
    finally:
        ws.close()
        await server.request("DELETE", f"/api/kernels/{kernel['id']}")
    lines = first.text.splitlines()
    assert lines[0].startswith("Warning from jupyter-gpuenv: torch121 (conda)"), first.text
    assert DRIVER_FIX in lines[0]
    assert lines[-1] == "first cell"
    assert second.text == "second cell\n"  # once only
    assert "starts although" in server.log_text()


@pytest.mark.docker
async def test_docker_kernel_refused_then_started_with_the_warning(
    server_processes, old_driver_host, pytorch_official_image
):
    """The official layout's CUDA 12.1 build on the same old driver, as a container kernel."""
    _gpuenv, nvml, notebooks = old_driver_host
    images = {"docker_images": {"official": pytorch_official_image}}
    blocking = server_processes(notebooks, images, extra_env=nvml)
    status, listing = await blocking.request("GET", "/gpuenv/api/environments")
    (env,) = listing["environments"]
    assert env["compatibility"]["verdict"] == "error", env["compatibility"]
    status, body = await blocking.request("POST", "/api/kernels", {"name": env["kernel_name"]})
    assert status == 403 and DRIVER_FIX in body["message"], body
    blocking.stop()

    server = server_processes(notebooks, {**images, "block_incompatible": False}, extra_env=nvml)
    status, kernel = await server.request("POST", "/api/kernels", {"name": env["kernel_name"]})
    assert status == 201, kernel
    status, listing = await server.request("GET", "/gpuenv/api/kernels")
    (described,) = listing["kernels"]
    assert DRIVER_FIX in described["start_warning"], described
    ws = await server.channels(kernel["id"])
    try:
        first = await ws.run("print('first cell')")
    finally:
        ws.close()
        await server.request("DELETE", f"/api/kernels/{kernel['id']}")
    assert first.text.startswith("Warning from jupyter-gpuenv: official (docker)"), first.text
    assert DRIVER_FIX in first.text and first.text.endswith("first cell\n")
