"""``GET /gpuenv/metrics`` through a real Jupyter server, read the way Prometheus reads it.

The server's sampler reads a fake NVML (the library boundary); a real local kernel's
PID holds GPU memory, so the per-kernel series come from the server's attribution.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from jupyter_server.utils import url_path_join
from prometheus_client.parser import text_string_to_metric_families

from jupyter_gpuenv.gpu.sampler import build_gpu_sampler
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess
from tests.support.server_config import server_config

GIB = 2**30


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return server_config(kernelspecs=False, gpu_sample_interval=0.1, hub_user="alice")


def metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


async def scrape(jp_fetch: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = await jp_fetch("gpuenv", "metrics")
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return metrics(response.body.decode("utf-8"))


async def test_metrics_match_the_gpus_and_the_kernel(jp_fetch: Any, jp_serverapp: Any) -> None:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(response.body)["id"]
    try:
        pid = jp_serverapp.kernel_manager.get_kernel(kernel_id).provisioner.pid
        gpu0 = FakeGpu(
            name="NVIDIA L4",
            memory_total=24 * GIB,
            memory_used=5 * GIB,
            utilization=(77, 30),
            processes=[FakeProcess(pid, 3 * GIB, sm_util=45)],
        )
        gpu1 = FakeGpu(memory_total=80 * GIB, memory_used=0, utilization=(0, 0))
        state = jp_serverapp.web_app.settings["gpuenv"]
        state.gpu_sampler.stop()
        state.gpu_sampler = build_gpu_sampler(
            state.config, jp_serverapp, nvml=FakeNvml([gpu0, gpu1])
        )
        for _ in range(100):
            found = await scrape(jp_fetch)
            if found["gpuenv_kernel_gpu_memory_used_bytes"]:
                break
            await asyncio.sleep(0.1)
        assert found["gpuenv_gpus_available"] == [({}, 1.0)]
        labels0 = {"gpu": "0", "uuid": gpu0.uuid, "name": "NVIDIA L4"}
        labels1 = {"gpu": "1", "uuid": gpu1.uuid, "name": gpu1.name}
        assert found["gpuenv_gpu_memory_used_bytes"] == [(labels0, 5 * GIB), (labels1, 0.0)]
        assert found["gpuenv_gpu_memory_total_bytes"] == [
            (labels0, 24 * GIB),
            (labels1, 80 * GIB),
        ]
        assert found["gpuenv_gpu_utilization_percent"] == [(labels0, 77.0), (labels1, 0.0)]
        kernel = {"kernel_id": kernel_id, "environment": "", "user": "alice", "gpu": "0"}
        assert found["gpuenv_kernel_gpu_memory_used_bytes"] == [(kernel, 3 * GIB)]
        assert found["gpuenv_kernel_gpu_utilization_percent"] == [(kernel, 45.0)]
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_no_gpu_machine_scrapes_as_unavailable(jp_fetch: Any) -> None:
    found = await scrape(jp_fetch)
    assert found["gpuenv_gpus_available"] == [({}, 0.0)]
    assert found["gpuenv_gpus"] == [({}, 0.0)]
    assert found["gpuenv_gpu_memory_used_bytes"] == []


async def test_scraping_needs_the_token(
    http_server_client: Any, jp_base_url: str, jp_auth_header: dict[str, str]
) -> None:
    url = url_path_join(jp_base_url, "gpuenv", "metrics")
    for headers in ({}, {"Authorization": "token not-the-token"}):
        response = await http_server_client.fetch(url, headers=headers, raise_error=False)
        assert response.code in (401, 403)
        assert "message" in json.loads(response.body)
    token = jp_auth_header["Authorization"].split()[-1]
    # What Prometheus sends with `authorization: {type: Bearer, credentials: <token>}`.
    response = await http_server_client.fetch(
        url, headers={"Authorization": f"Bearer {token}"}, raise_error=False
    )
    assert response.code == 200, response.body
    metrics(response.body.decode())
