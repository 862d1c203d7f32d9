"""``GET /gpuenv/api/gpus?history=SECONDS`` through a real Jupyter server.

The server's sampler reads a fake NVML (the library boundary, nothing else replaced);
the GPU figures change between samples and a real local kernel's PID holds GPU memory,
so the series come from the server's own sampling and attribution.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gpuenv.gpu.sampler import build_gpu_sampler
from jupyter_gpuenv.server.openapi_api import openapi_document
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess
from tests.support.server_config import server_config

GIB = 2**30
INTERVAL = 0.1
WINDOW = 2.0  # 20 points at most


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return server_config(
        kernelspecs=False, gpu_sample_interval=INTERVAL, gpu_history_seconds=WINDOW
    )


def use_fake_nvml(serverapp: Any, nvml: FakeNvml) -> Any:
    """Rebuild the server's sampler around a fake NVML (the only thing replaced)."""
    state = serverapp.web_app.settings["gpuenv"]
    state.gpu_sampler.stop()
    state.gpu_sampler = build_gpu_sampler(state.config, serverapp, nvml=nvml)
    return state.gpu_sampler


async def get_history(jp_fetch: Any, seconds: str = "60") -> dict[str, Any]:
    response = await jp_fetch("gpuenv", "api", "gpus", params={"history": seconds})
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def test_history_follows_the_gpus_and_stays_bounded(jp_fetch: Any, jp_serverapp: Any) -> None:
    gpu = FakeGpu(memory_total=80 * GIB, memory_used=GIB, utilization=(0, 0))
    sampler = use_fake_nvml(jp_serverapp, FakeNvml([gpu, FakeGpu()]))
    assert sampler.history.maxlen == 20
    seen: set[int] = set()
    for step in range(60):  # 6 s: three windows' worth of samples
        gpu.utilization = (step % 100, 0)
        gpu.memory_used = (step % 7 + 1) * GIB
        body = await get_history(jp_fetch)
        history = body["history"]
        assert len(history["timestamps"]) <= 20
        assert len(sampler.history) <= 20
        seen.update(v for v in history["gpus"][0]["utilization_gpu"] if v is not None)
        await asyncio.sleep(INTERVAL)
    assert len(history["timestamps"]) >= 10
    assert history["window"] == WINDOW and history["seconds"] == WINDOW  # 60 asked, capped
    assert history["timestamps"] == sorted(history["timestamps"])
    first, second = history["gpus"]
    for series in (first["utilization_gpu"], first["memory_used"], second["memory_used"]):
        assert len(series) == len(history["timestamps"])
    assert len(seen) >= 10  # the changing figures were sampled, not one value repeated
    assert set(first["memory_used"]) <= {n * GIB for n in range(1, 8)}
    assert first["memory_total"] == 80 * GIB
    # The rest of the body is the usual GPU status.
    assert body["available"] and len(body["gpus"]) == 2
    schema = openapi_document()["components"]["schemas"]["GpuHistory"]
    assert set(schema["required"]) == set(history)
    # Without the parameter: no history, the shared body as before.
    plain = json.loads((await jp_fetch("gpuenv", "api", "gpus")).body)
    assert "history" not in plain


async def test_a_shorter_history_is_the_newest_part(jp_fetch: Any, jp_serverapp: Any) -> None:
    use_fake_nvml(jp_serverapp, FakeNvml([FakeGpu()]))
    for _ in range(30):
        body = await get_history(jp_fetch)
        if len(body["history"]["timestamps"]) >= 10:
            break
        await asyncio.sleep(INTERVAL)
    full = body["history"]["timestamps"]
    short = (await get_history(jp_fetch, "0.35"))["history"]
    assert short["seconds"] == 0.35
    assert 1 <= len(short["timestamps"]) <= 6
    assert short["timestamps"][-1] - short["timestamps"][0] <= 0.35
    assert short["timestamps"][0] >= full[0]


async def test_a_kernels_gpu_memory_over_time(jp_fetch: Any, jp_serverapp: Any) -> None:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(response.body)["id"]
    try:
        pid = jp_serverapp.kernel_manager.get_kernel(kernel_id).provisioner.pid
        gpu = FakeGpu()
        use_fake_nvml(jp_serverapp, FakeNvml([gpu]))
        memory = [GIB, 2 * GIB, 3 * GIB]
        for held in memory:
            gpu.processes = [FakeProcess(pid, held)]
            for _ in range(50):
                body = await get_history(jp_fetch)
                kernels = {k["kernel_id"]: k for k in body["history"]["kernels"]}
                if kernel_id in kernels and kernels[kernel_id]["memory_used"][-1] == held:
                    break
                await asyncio.sleep(INTERVAL)
        series = kernels[kernel_id]
        assert series["gpus"] == [0] and series["environment_id"] is None
        values = [v for v in series["memory_used"] if v is not None]
        assert set(values) <= set(memory) and values[-1] == 3 * GIB
        assert values == sorted(values)  # held 1, then 2, then 3 GiB, in that order
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


@pytest.mark.parametrize("value", ["", "abc", "0", "-5", "nan", "inf", "1e400", "10s"])
async def test_a_bad_history_value_is_a_json_400(jp_fetch: Any, value: str) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("gpuenv", "api", "gpus", params={"history": value})
    response = info.value.response
    assert response.code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    body = json.loads(response.body)
    assert body["status"] == 400
    assert "history" in body["message"] and "seconds" in body["message"]
