"""The last exit of a venv kernel: killed by a signal, restarted, and told so."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.provisioning.conftest import environment_named
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.server_config import server_config


@pytest.fixture
def jp_server_config(tmp_path, venv_factory):
    venv = venv_factory(tmp_path / "venvs" / "exits")
    return server_config(venv_dirs=[str(venv.parent)])


async def status_of(jp_fetch, kernel_id):
    return json.loads((await jp_fetch("gpuenv", "api", "kernels", kernel_id)).body)


async def test_signal_death_of_a_local_kernel_is_kept(jp_fetch, jp_ws_fetch, jp_serverapp):
    env = await environment_named(jp_fetch, "exits")
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": env["kernel_name"]})
    )
    kernel_id = json.loads(response.body)["id"]
    try:
        first_pid = jp_serverapp.kernel_manager.get_kernel(kernel_id).provisioner.pid
        status = await status_of(jp_fetch, kernel_id)
        assert status["kind"] == "local" and status["pid"] == first_pid
        assert status["container"] is None and status["last_exit"] is None
        ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
        await ws.ready()
        ws.send("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        deadline = time.monotonic() + 60
        while (status := await status_of(jp_fetch, kernel_id))["restart_count"] < 1:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.3)
        ws.close()
        last = status["last_exit"]
        assert last["code"] == -9 and last["signal"] == "SIGKILL"
        assert last["oom_killed"] is False and last["requested"] is False
        assert last["reason"] == "killed by SIGKILL (possibly the out-of-memory killer)"
        ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
        await ws.ready()
        told = await ws.run(
            "import json, os\n"
            "print(json.loads(os.environ['JUPYTER_GPUENV_PREVIOUS_EXIT'])['reason'])"
        )
        assert told.text.strip() == last["reason"]
        ws.close()
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
