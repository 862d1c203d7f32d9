"""A Docker outage with kernels running: shown as disconnected, answered with 503, healed.

The server talks to Docker through a proxy socket (tests/support/docker_proxy.py);
stopping the proxy is the outage as the server sees it, while the engine and the kernel
containers run on (the engine is shared with everything else on this machine and is
never stopped). When the proxy is back the kernel re-attaches to its container; when the
container did not survive (removed while Docker was away) the kernel restarts cleanly
into a new one. Facts gathered during the outage are not kept: a catalog that could not
probe the image does not send the kernel into building an ipykernel layer it does not need.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gpuenv.docker import labels
from tests.provisioning.conftest import (
    environment_named,
    kernel_containers,
    kernel_status,
    until_status,
)
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.docker_proxy import DockerProxy
from tests.support.server_config import server_config

pytestmark = pytest.mark.docker


@pytest.fixture
def proxy(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpuenv-outage") / "docker.sock"
    proxy = DockerProxy(path)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def jp_server_config(python_kernel_image, proxy):
    return server_config(docker_images={"outage": python_kernel_image}, docker_host=proxy.address)


async def test_outage_is_a_state_and_heals_by_itself(
    jp_fetch, jp_ws_fetch, docker_client, proxy, caplog
):
    caplog.set_level(logging.WARNING)
    env = await environment_named(jp_fetch, "outage")
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": env["kernel_name"]})
    )
    kernel_id = json.loads(response.body)["id"]
    try:
        (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
        ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
        await ws.run("x = 41")

        # Outage, container alive: disconnected, actions refused with a reason, no restart.
        proxy.stop()
        status = await until_status(
            jp_fetch, kernel_id, lambda s: s["connection"] == "disconnected", "the outage"
        )
        assert status["docker"]["reachable"] is False
        assert f"Docker daemon is not reachable at {proxy.address}" in status["docker"]["reason"]
        assert status["execution_state"] == "disconnected"
        model = json.loads((await jp_fetch("api", "kernels", kernel_id)).body)
        assert model["execution_state"] == "disconnected"
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("api", "kernels", kernel_id, "interrupt", method="POST", body="")
        assert err.value.code == 503
        assert "disconnected from Docker" in json.loads(err.value.response.body)["message"]
        # The container runs on: a new websocket connects, and the kernel still computes.
        other = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
        assert (await other.run("print(x + 1)")).text.strip() == "42"
        other.close()
        await asyncio.sleep(7)  # two restarter polls: no restart, no exception
        assert (await kernel_status(jp_fetch, kernel_id))["restart_count"] == 0

        # Docker back: the same container, the same variables.
        proxy.start()
        status = await until_status(
            jp_fetch, kernel_id, lambda s: s["connection"] == "connected", "the re-attach"
        )
        assert status["container"]["id"] == container.id and status["restart_count"] == 0
        assert status["execution_state"] != "disconnected"
        assert (await ws.run("x += 1; print(x)")).text.strip() == "42"
        assert (await kernel_status(jp_fetch, kernel_id))["execution_state"] == "idle"
        ws.close()

        # Outage during which the container goes: a clean restart into a new container.
        proxy.stop()
        await until_status(
            jp_fetch, kernel_id, lambda s: s["connection"] == "disconnected", "the 2nd outage"
        )
        docker_client.api.remove_container(container.id, force=True)
        proxy.start()
        status = await until_status(
            jp_fetch,
            kernel_id,
            lambda s: s["restart_count"] == 1 and s["container"],
            "the restart into a new container",
            timeout=120,
        )
        assert status["connection"] == "connected"
        assert "container disappeared" in status["last_exit"]["reason"]
        (renewed,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
        assert renewed.id != container.id and status["container"]["id"] == renewed.id
        ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
        await ws.ready()
        assert (await ws.run("print('x' in globals())")).text.strip() == "False"
        ws.close()
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    callbacks = [
        r.getMessage() for r in caplog.records if "Exception in callback" in r.getMessage()
    ]
    assert not callbacks


async def test_probe_during_an_outage_is_not_taken_as_a_fact(jp_fetch, docker_client, proxy):
    proxy.stop()
    env = await environment_named(jp_fetch, "outage")
    assert env["ipykernel"] is False and env["python_version"] is None
    assert any("not reachable" in p for p in env["problems"]), env
    proxy.start()
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": env["kernel_name"]})
    )
    kernel_id = json.loads(response.body)["id"]
    (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    # The image has ipykernel: it runs as it is, no kernel layer.
    assert container.image.id == docker_client.images.get(env["location"]["image"]).id
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
