"""Idle kernels holding GPU memory are warned about, then shut down by the server.

A real local kernel through a real server; the fake NVML (the only thing replaced, at the
library boundary) reports the kernel's real PID holding 2 GiB on a GPU. A second kernel
holding no GPU memory is left alone however idle it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import pytest

from jupyter_gpuenv.gpu.sampler import build_gpu_sampler
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess
from tests.support.server_config import server_config

TIMEOUT, WARNING = 8.0, 6.0


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return server_config(
        kernelspecs=False,
        gpu_sample_interval=0.2,
        gpu_idle_timeout=TIMEOUT,
        gpu_idle_warning=WARNING,
    )


async def start_kernel(jp_fetch: Any) -> str:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    return str(json.loads(response.body)["id"])


async def listing(jp_fetch: Any) -> dict[str, Any]:
    return json.loads((await jp_fetch("gpuenv", "api", "kernels")).body)


async def until(jp_fetch: Any, check: Any, what: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await listing(jp_fetch)
        if check(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {body}")
        await asyncio.sleep(0.2)


async def test_idle_gpu_kernel_is_warned_then_shut_down(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any
) -> None:
    holder = await start_kernel(jp_fetch)
    bystander = await start_kernel(jp_fetch)
    try:
        for kernel_id in (holder, bystander):  # started and answering: idle from now on
            ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
            await ws.ready()
            ws.close()
        pid = jp_serverapp.kernel_manager.get_kernel(holder).provisioner.pid
        state = jp_serverapp.web_app.settings["gpuenv"]
        state.gpu_sampler.stop()
        nvml = FakeNvml([FakeGpu(processes=[FakeProcess(pid, 2 * 2**30)])])
        state.gpu_sampler = build_gpu_sampler(state.config, jp_serverapp, nvml=nvml)
        started = time.monotonic()

        def by_id(body: dict[str, Any]) -> dict[str, Any]:
            return {k["id"]: k for k in body["kernels"]}

        body = await until(jp_fetch, lambda b: by_id(b)[holder]["reclaim"], "the warning")
        assert body["gpu_idle_timeout"] == TIMEOUT
        kernels = by_id(body)
        warned = kernels[holder]
        assert warned["gpus"] == [
            {"index": 0, "uuid": warned["gpus"][0]["uuid"], "used_memory": 2 * 2**30}
        ]
        assert "will be shut down to free the GPU" in warned["reclaim"]["message"]
        assert warned["reclaim"]["idle_seconds"] >= TIMEOUT - WARNING
        assert kernels[bystander]["reclaim"] is None and kernels[bystander]["gpus"] == []
        assert holder in jp_serverapp.kernel_manager.list_kernel_ids()  # not yet

        body = await until(jp_fetch, lambda b: holder not in by_id(b), "the shutdown")
        assert time.monotonic() - started >= TIMEOUT - WARNING
        (gone,) = body["reclaimed"]
        assert gone["kernel_id"] == holder and gone["gpu_memory"] == 2 * 2**30
        assert "Shut down: it held 2.0 GiB" in gone["message"]
        assert bystander in by_id(body)  # idle, but holds no GPU
    finally:
        for kernel_id in (holder, bystander):
            if kernel_id in jp_serverapp.kernel_manager.list_kernel_ids():
                await jp_fetch("api", "kernels", kernel_id, method="DELETE")


@pytest.mark.parametrize(
    "jp_server_config", [server_config(kernelspecs=False, gpu_sample_interval=0.2)]
)
async def test_cli_shows_each_gpu_kernels_memory_and_idle_time(
    jp_fetch: Any, jp_serverapp: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_gpuenv.cli.gpus_cmd import run
    from jupyter_gpuenv.config import GpuEnv

    kernel_id = await start_kernel(jp_fetch)
    try:
        pid = jp_serverapp.kernel_manager.get_kernel(kernel_id).provisioner.pid
        nvml = FakeNvml([FakeGpu(processes=[FakeProcess(pid, 3 * 2**30)])])
        server = {
            "url": jp_serverapp.connection_url,
            "token": jp_serverapp.identity_provider.token,
        }
        args = argparse.Namespace(json=False, all=False)
        deadline = time.monotonic() + 60
        while ((await listing(jp_fetch))["kernels"][0]["idle_seconds"] or 0) < 3:
            assert time.monotonic() < deadline, "the kernel never became idle"
            await asyncio.sleep(0.5)
        # The CLI blocks on HTTP to the server, which runs on this loop: a thread.
        code = await asyncio.to_thread(run, args, GpuEnv(), nvml, [server])
        assert code == 0
        table = capsys.readouterr().out
        header, row = [
            line.split()
            for line in table.splitlines()
            if "PID" in line or line.strip().startswith(str(pid))
        ]
        assert header[:5] == ["PID", "Process", "GPU", "memory", "Kernel"]
        assert row[0] == str(pid) and row[2:4] == ["3.0", "GiB"] and row[4] == kernel_id
        minutes, seconds = row[5].split("m")
        assert int(minutes) == 0 and 3 <= int(seconds.rstrip("s")) < 60
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
