"""Idle culling: jupyter_server's culler shuts a Docker kernel down, and its container goes.

The culler calls the kernel manager's shutdown, which reaches the DockerProvisioner; no
container may stay behind, and while it ran it carried the Hub user's name.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from jupyter_gpuenv.docker import labels
from tests.support.waits import eventually

pytestmark = [pytest.mark.hub, pytest.mark.docker]

HUB_USER = "culled-user"


@pytest.fixture
def jp_server_config(python_kernel_image: str) -> dict[str, Any]:
    # No kernel_spec_manager_class: the extension must bring its own, as for users.
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_gpuenv": True}},
        "MappingKernelManager": {"cull_idle_timeout": 3, "cull_interval": 1},
        "GpuEnv": {
            "docker_images": {"python": {"image": python_kernel_image, "gpus": "none"}},
            "conda_envs_dirs": [],
            "venv_dirs": [],
            "docker_label_discovery": False,
            "docker_discover_pytorch_images": False,
            "hub_user": HUB_USER,
        },
    }


async def test_culled_docker_kernel_leaves_no_container(
    jp_fetch: Any, jp_serverapp: Any, docker_client: Any
) -> None:
    listing = json.loads((await jp_fetch("gpuenv", "api", "environments")).body)
    (env,) = [e for e in listing["environments"] if e["name"] == "python"]
    reply = await jp_fetch(
        "api",
        "kernels",
        method="POST",
        body=json.dumps({"name": env["kernel_name"]}),
        request_timeout=300,
    )
    kernel_id = json.loads(reply.body)["id"]

    def containers() -> list[Any]:
        return docker_client.containers.list(
            all=True, filters={"label": f"{labels.KERNEL_ID}={kernel_id}"}
        )

    (container,) = containers()
    assert container.labels[labels.USER] == HUB_USER
    assert container.labels[labels.ENVIRONMENT_ID] == env["id"]

    async def kernel_ids() -> set[str]:
        body = (await jp_fetch("api", "kernels")).body
        return {k["id"] for k in json.loads(body)}

    deadline = time.monotonic() + 120
    while kernel_id in await kernel_ids():
        assert time.monotonic() < deadline, "the idle kernel was not culled within 120 s"
        await asyncio.sleep(0.5)
    await eventually(lambda: containers() == [], 60, "the culled kernel's container removed")
