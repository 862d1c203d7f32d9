"""Why did my kernel die: the last exit of a kernel, kept across its automatic restart.

A container kernel with a 100 MiB memory limit fills far more; the kernel OOM killer ends
it, jupyter_client restarts it into a new container (the old one removed), and the server
still knows why: ``GET /gpuenv/api/kernels/{id}`` and ``%gpuinfo`` in the new process.
"""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.server.openapi_api import openapi_document
from tests.provisioning.conftest import (
    environment_named,
    kernel_containers,
    kernel_status,
    until_status,
)
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.server_config import server_config

pytestmark = pytest.mark.docker

FILL_MEMORY = "blob = b'x' * (900 * 2**20)\nprint(len(blob))"


@pytest.fixture
def jp_server_config(python_kernel_image):
    return server_config(
        docker_images={"small": {"image": python_kernel_image, "mem_limit": "100m"}}
    )


async def test_out_of_memory_kill_is_reported_after_the_restart(
    jp_fetch, jp_ws_fetch, docker_client
):
    env = await environment_named(jp_fetch, "small")
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": env["kernel_name"]})
    )
    kernel_id = json.loads(response.body)["id"]
    try:
        status = await kernel_status(jp_fetch, kernel_id)
        assert status["kind"] == "docker" and status["environment"]["name"] == "small"
        assert status["restart_count"] == 0 and status["last_exit"] is None
        assert status["connection"] == "connected"
        (first,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
        assert status["container"]["id"] == first.id

        ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
        await ws.ready()
        ws.send(FILL_MEMORY)  # never answers: the process is killed
        status = await until_status(
            jp_fetch,
            kernel_id,
            lambda s: s["restart_count"] >= 1 and s["container"],
            "the automatic restart",
            timeout=120,
        )
        ws.close()
        last = status["last_exit"]
        assert last["oom_killed"] is True and last["requested"] is False
        assert last["reason"] == "killed: out of memory (limit 100 MiB, mem_limit)"
        assert last["code"] == 137 and last["signal"] == "SIGKILL"
        schema = openapi_document()["components"]["schemas"]
        assert set(schema["KernelStatus"]["required"]) <= set(status)
        assert set(schema["KernelExit"]["required"]) <= set(last)

        # The dead container is gone; the new one knows what happened to the old.
        (second,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
        assert second.id != first.id and status["container"]["id"] == second.id
        ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
        await ws.ready()
        report = await ws.run(
            "from IPython.utils.capture import capture_output\n"
            "with capture_output() as shown:\n"
            "    get_ipython().run_line_magic('gpuinfo', '')\n"
            "print(shown.outputs[0].data['text/plain'])"
        )
        assert "Previous kernel process (restart 1, ended " in report.text, report
        assert "killed: out of memory (limit 100 MiB, mem_limit)" in report.text
        info = await ws.run("info = %gpuinfo --json\nprint(info['previous_exit'])")
        ws.close()
        assert "'oom_killed': True" in info.text
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    with pytest.raises(HTTPClientError) as err:
        await kernel_status(jp_fetch, kernel_id)
    assert err.value.code == 404
    assert "No kernel with id" in json.loads(err.value.response.body)["message"]
