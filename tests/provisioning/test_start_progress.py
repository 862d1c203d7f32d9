"""A slow kernel start shows its steps: a real server builds a real kernel layer.

The image is a fresh copy of the bare-python image (no ipykernel), so its kernel layer
is really built (reading the image's Python, downloading wheels, building) while the
test reads ``GET /gpuenv/api/progress`` beside the start request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.provisioning.conftest import environment_named
from tests.support.server_config import server_config
from tests.support.slow_work import fresh_image

pytestmark = pytest.mark.docker

LAYER_STEPS = ["kernel-layer-probe", "kernel-layer-download", "kernel-layer-build"]


@pytest.fixture
def fresh_bare(docker_client, bare_python_image) -> Iterator[str]:
    with fresh_image(docker_client, bare_python_image, "progress-bare") as tag:
        yield tag


@pytest.fixture
def jp_server_config(fresh_bare):
    return server_config(
        docker_images={"fresh": fresh_bare, "absent": "gpuenv-test-absent/none:missing"}
    )


async def progress(jp_fetch, **query: str) -> dict[str, Any]:
    response = await jp_fetch("gpuenv", "api", "progress", params=query)
    return json.loads(response.body)


async def test_a_kernel_layer_build_reports_its_steps(jp_fetch) -> None:
    env = await environment_named(jp_fetch, "fresh")
    assert env["ipykernel"] is False
    start = asyncio.ensure_future(
        jp_fetch(
            "api",
            "kernels",
            method="POST",
            body=json.dumps({"name": env["kernel_name"]}),
            request_timeout=600,
        )
    )
    seen: list[dict[str, Any]] = []
    while not start.done():
        for entry in (await progress(jp_fetch, environment_id=env["id"]))["starts"]:
            seen.append(entry)
        await asyncio.sleep(0.2)
    kernel_id = json.loads((await start).body)["id"]
    try:
        (final,) = (await progress(jp_fetch, kernel_id=kernel_id))["starts"]
        keys = [step["key"] for step in final["steps"]]
        assert keys == [
            "environment",
            "image",
            *LAYER_STEPS,
            "container",
            "kernel",
            "ready",
        ], final
        assert final["state"] == "ready" and final["reason"] is None
        assert final["environment"] == {
            "id": env["id"],
            "name": "fresh",
            "display_name": env["display_name"],
        }
        assert all(step["state"] == "done" for step in final["steps"])
        assert "downloading ipykernel wheels for Python 3." in final["steps"][3]["message"]
        assert final["steps"][4]["detail"].startswith("built in ")
        # While it ran, REST showed the start under way at its layer steps, in order.
        running = [e for e in seen if e["kernel_id"] == kernel_id and e["state"] == "starting"]
        current = [e["steps"][-1]["key"] for e in running]
        assert "kernel-layer-build" in current, current
        assert current == sorted(current, key=keys.index)
        assert all(e["message"] == e["steps"][-1]["message"] for e in running)
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_a_failed_start_says_why_in_its_progress(jp_fetch) -> None:
    env = await environment_named(jp_fetch, "absent")
    with pytest.raises(HTTPClientError):
        await jp_fetch(
            "api", "kernels", method="POST", body=json.dumps({"name": env["kernel_name"]})
        )
    (entry,) = (await progress(jp_fetch, environment_id=env["id"]))["starts"]
    assert entry["state"] == "failed"
    assert "is not present locally" in entry["reason"]
    assert entry["steps"][-1]["key"] == "image"
    assert entry["steps"][-1]["state"] == "failed"
