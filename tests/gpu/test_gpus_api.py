"""``GET /gpuenv/api/gpus`` through a real Jupyter server.

On this GPU-less machine the real NVML path answers ``available: false``. With the fake
NVML swapped in at the library boundary (the server's sampler rebuilt around it), the
processes it reports are real PIDs of a real local kernel and of a child it started, so
the attribution to kernel id and notebook path is the server's own.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gpuenv.gpu.sampler import build_gpu_sampler
from jupyter_gpuenv.server.openapi_api import openapi_document
from tests.gpu.kernel_session import run_cell
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess
from tests.support.server_config import server_config

NOTEBOOK = "work/analysis.ipynb"


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return server_config(kernelspecs=False, gpu_sample_interval=0.2)


async def get_gpus(jp_fetch: Any) -> dict[str, Any]:
    """The GPU status, once the first sample is in (bounded: the first one may take a while)."""
    for _ in range(100):
        response = await jp_fetch("gpuenv", "api", "gpus")
        assert response.code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        body = json.loads(response.body)
        if body["state"] != "sampling":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError("the GPU sampler never produced a sample")


def use_fake_nvml(serverapp: Any, nvml: FakeNvml) -> None:
    """Rebuild the server's sampler around a fake NVML (the only thing replaced)."""
    state = serverapp.web_app.settings["gpuenv"]
    state.gpu_sampler.stop()
    state.gpu_sampler = build_gpu_sampler(state.config, serverapp, nvml=nvml)


async def test_no_gpu_machine_answers_200_unavailable_with_a_reason(jp_fetch: Any) -> None:
    body = await get_gpus(jp_fetch)
    assert body["available"] is False and body["state"] == "unavailable"
    assert "libnvidia-ml.so not found" in body["reason"]
    assert body["gpus"] == [] and body["driver_version"] is None
    assert isinstance(body["sampled_at"], float)
    schema = openapi_document()["components"]["schemas"]["GpuStatus"]
    assert set(schema["required"]) <= set(body)


async def test_requires_authentication(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("gpuenv", "api", "gpus", headers={"Authorization": ""})
    assert err.value.code in (401, 403)


async def test_processes_of_a_local_kernel_are_attributed(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path
) -> None:
    (jp_root_dir / "work").mkdir()
    response = await jp_fetch(
        "api",
        "sessions",
        method="POST",
        body=json.dumps({"path": NOTEBOOK, "type": "notebook", "kernel": {"name": "python3"}}),
    )
    kernel_id = json.loads(response.body)["kernel"]["id"]
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    kernel_pid = manager.provisioner.pid
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        # A worker process of the kernel (like a DataLoader worker) also uses the GPU.
        out = await run_cell(
            client,
            "import subprocess, sys\n"
            "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            "print(worker.pid)",
        )
        worker_pid = int(out.text.strip())
        stranger = 2**22 + 4321  # no such process: nobody's
        nvml = FakeNvml(
            [
                FakeGpu(processes=[FakeProcess(kernel_pid, 3 * 2**30), FakeProcess(stranger)]),
                FakeGpu(processes=[FakeProcess(worker_pid, 2**30)]),
            ]
        )
        use_fake_nvml(jp_serverapp, nvml)
        body = await get_gpus(jp_fetch)
        assert body["available"] and body["cuda_driver_version"] == "12.4"
        gpu0, gpu1 = body["gpus"]
        (kernel_proc,) = gpu0["processes"]
        assert kernel_proc["pid"] == kernel_pid and kernel_proc["used_memory"] == 3 * 2**30
        (worker_proc,) = gpu1["processes"]
        for proc in (kernel_proc, worker_proc):
            assert proc["kernel_id"] == kernel_id
            assert proc["notebook_path"] == NOTEBOOK
            assert proc["environment_id"] is None  # the stock python3 kernelspec
            assert proc["own"] is True and proc["container_id"] is None
        assert gpu0["hidden_processes"] == 1  # the stranger is not this user's
        await run_cell(client, "worker.kill(); worker.wait()")
    finally:
        client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_show_all_processes_lists_the_stranger_too(jp_fetch: Any, jp_serverapp: Any) -> None:
    state = jp_serverapp.web_app.settings["gpuenv"]
    state.config.show_all_gpu_processes = True
    stranger = 2**22 + 4321
    use_fake_nvml(jp_serverapp, FakeNvml([FakeGpu(processes=[FakeProcess(stranger)])]))
    body = await get_gpus(jp_fetch)
    (proc,) = body["gpus"][0]["processes"]
    assert proc["pid"] == stranger and proc["own"] is False and proc["kernel_id"] is None


async def test_per_user_grant_limits_the_gpus(
    jp_fetch: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUENV_GPUS", "GPU-granted-1")
    nvml = FakeNvml(
        [
            FakeGpu(uuid="GPU-other-0", processes=[FakeProcess(os.getpid())]),
            FakeGpu(uuid="GPU-granted-1"),
        ]
    )
    use_fake_nvml(jp_serverapp, nvml)
    body = await get_gpus(jp_fetch)
    assert [g["uuid"] for g in body["gpus"]] == ["GPU-granted-1"]
    assert body["gpu_count"] == 1 and body["available"] is True
