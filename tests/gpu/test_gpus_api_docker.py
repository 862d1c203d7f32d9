"""GPU processes inside a real kernel container, attributed through the Docker provisioner.

A real Jupyter server starts a kernel of the CPU PyTorch image through the
DockerProvisioner; the fake NVML then reports the real host PID of the ipykernel process
inside that container, as NVML does on a GPU host. The server must name the kernel,
its environment and its notebook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.gpu.attribution import read_container_id
from tests.gpu.kernel_session import child_pids
from tests.gpu.test_gpus_api import get_gpus, use_fake_nvml
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess
from tests.support.server_config import server_config

pytestmark = pytest.mark.docker

NOTEBOOK = "experiments/train.ipynb"


@pytest.fixture
def jp_server_config(torch_cpu_image: str) -> dict[str, Any]:
    return server_config(docker_images={"torchcpu": torch_cpu_image}, gpu_sample_interval=0.2)


async def test_process_in_a_kernel_container_is_attributed(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, docker_client: Any
) -> None:
    listing = json.loads((await jp_fetch("gpuenv", "api", "environments")).body)
    (env,) = [e for e in listing["environments"] if e["name"] == "torchcpu"]
    (jp_root_dir / "experiments").mkdir()
    response = await jp_fetch(
        "api",
        "sessions",
        method="POST",
        body=json.dumps(
            {"path": NOTEBOOK, "type": "notebook", "kernel": {"name": env["kernel_name"]}}
        ),
        request_timeout=300,
    )
    kernel_id = json.loads(response.body)["kernel"]["id"]
    try:
        provisioner = jp_serverapp.kernel_manager.get_kernel(kernel_id).provisioner
        container = docker_client.containers.get(provisioner.container_id)
        init_pid = container.attrs["State"]["Pid"]
        # PID 1 of the container is docker-init; the kernel is its child.
        kernel_pids = child_pids(init_pid) or [init_pid]
        for pid in [init_pid, *kernel_pids]:
            assert read_container_id(pid) == container.id
        nvml = FakeNvml([FakeGpu(processes=[FakeProcess(kernel_pids[0], 5 * 2**30)])])
        use_fake_nvml(jp_serverapp, nvml)
        body = await get_gpus(jp_fetch)
        (proc,) = body["gpus"][0]["processes"]
        assert proc["pid"] == kernel_pids[0]
        assert proc["container_id"] == container.id
        assert proc["kernel_id"] == kernel_id
        assert proc["environment_id"] == env["id"]
        assert proc["notebook_path"] == NOTEBOOK
        assert proc["used_memory"] == 5 * 2**30 and proc["own"] is True
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
