"""A warm kernel holding GPU memory is counted by GPU status as this server's kernel.

A real venv kernel kept warm by an in-process server; the fake NVML (the only thing
replaced, at the library boundary) reports the warm kernel's real PID on a GPU.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.gpu.sampler import build_gpu_sampler
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess
from tests.support.server_config import server_config


@pytest.fixture
def jp_server_config(tmp_path: Path, venv_factory: Callable[..., Path]) -> dict[str, Any]:
    venv = venv_factory(tmp_path / "venvs" / "warmgpu")
    return server_config(
        gpu_sample_interval=0.2,
        venv_dirs=[str(venv.parent)],
        warm_kernels={"warmgpu": {"count": 1}},
    )


async def test_a_warm_kernels_gpu_process_is_attributed_to_it(
    jp_fetch: Any, jp_serverapp: Any
) -> None:
    state = jp_serverapp.web_app.settings["gpuenv"]
    warm = state.warm
    warm.start()  # what the extension's start hook does once the loop runs (idempotent)
    try:
        for _ in range(600):
            if warm.kernel_records():
                break
            await asyncio.sleep(0.1)
        (record,) = warm.kernel_records()
        assert record.pid is not None
        # The same sampler wiring as the server's, around a fake NVML.
        wiring = state.gpu_sampler.kernel_records
        state.gpu_sampler.stop()
        nvml = FakeNvml([FakeGpu(processes=[FakeProcess(record.pid, 2**30)])])
        state.gpu_sampler = build_gpu_sampler(state.config, jp_serverapp, nvml=nvml)
        state.gpu_sampler.kernel_records = wiring
        for _ in range(100):
            body = json.loads((await jp_fetch("gpuenv", "api", "gpus")).body)
            if body["state"] != "sampling":
                break
            await asyncio.sleep(0.1)
        (gpu,) = body["gpus"]
        (proc,) = gpu["processes"]
        assert proc["pid"] == record.pid and proc["kernel_id"] == record.kernel_id
        assert proc["environment_id"] == record.environment_id is not None
        assert proc["own"] is True
        listed = json.loads((await jp_fetch("api", "kernels")).body)
        assert listed == []  # counted for its GPU, not offered as a running kernel
    finally:
        await warm.stop()
