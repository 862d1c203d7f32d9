"""The doctor through a real Jupyter server: the catalog's ``compatibility`` field and
``GET /gpuenv/api/doctor``, for a conda prefix reporting a CUDA 12.1 PyTorch build."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gpuenv.doctor.host_probe import read_gpu_status
from jupyter_gpuenv.server.openapi_api import openapi_document
from tests.support.fake_torch import TORCH_CU121
from tests.support.server_config import server_config


@pytest.fixture
def jp_server_config(tmp_path, conda_prefix_factory):
    prefix = conda_prefix_factory(tmp_path / "envs" / "torch121", torch=TORCH_CU121)
    return server_config(kernelspecs=False, conda_envs_dirs=[str(prefix.parent)])


async def get_json(jp_fetch, *parts, **query):
    response = await jp_fetch(*parts, params=query) if query else await jp_fetch(*parts)
    assert response.code == 200
    return json.loads(response.body)


async def test_catalog_entries_carry_compatibility_against_the_real_host(jp_fetch):
    listing = await get_json(jp_fetch, "gpuenv", "api", "environments")
    (env,) = [e for e in listing["environments"] if e["name"] == "torch121"]
    assert env["cuda_version"] == "12.1"
    compatibility = env["compatibility"]
    assert set(compatibility) == {"verdict", "findings"}
    assert compatibility["findings"], compatibility
    for finding in compatibility["findings"]:
        assert set(finding) == {"severity", "message", "fix"}
        assert "\n" not in finding["message"]
    if not read_gpu_status()["available"]:
        # This machine has no GPU: the CUDA build works on the CPU only.
        assert compatibility["verdict"] == "warning"
        assert "it works on the CPU only" in compatibility["findings"][0]["message"]
    # The single-environment endpoint carries the same field.
    one = await get_json(jp_fetch, "gpuenv", "api", "environments", env["id"])
    assert one["compatibility"] == compatibility

    report = await get_json(jp_fetch, "gpuenv", "api", "doctor")
    assert report["host"]["hypothetical"] is False
    (entry,) = [e for e in report["environments"] if e["id"] == env["id"]]
    assert entry == {
        "id": env["id"],
        "name": "torch121",
        "kind": "conda",
        **compatibility,
    }


async def catalog_compatibility(jp_fetch):
    listing = await get_json(jp_fetch, "gpuenv", "api", "environments")
    (env,) = [e for e in listing["environments"] if e["name"] == "torch121"]
    return env["compatibility"]


async def test_doctor_for_a_hypothetical_host(jp_fetch):
    before = await catalog_compatibility(jp_fetch)
    old = await get_json(
        jp_fetch, "gpuenv", "api", "doctor", driver_version="470.82.01", compute_capability="8.6"
    )
    assert old["host"]["hypothetical"] is True
    assert old["host"]["cuda_driver_version"] == "11.4"
    (entry,) = [e for e in old["environments"] if e["name"] == "torch121"]
    assert entry["verdict"] == "error"
    (error,) = [f for f in entry["findings"] if f["severity"] == "error"]
    assert error["fix"] == (
        "upgrade the driver to ≥ 530.30.02, or install a PyTorch build for CUDA ≤ 11.4"
    )

    new = await get_json(
        jp_fetch,
        "gpuenv",
        "api",
        "doctor",
        driver_version="535.54.03",
        compute_capability="8.6",
        env=entry["id"],
    )
    assert [(e["id"], e["verdict"]) for e in new["environments"]] == [(entry["id"], "ok")]

    # A hypothetical host never changes what the catalog says about the real one.
    assert await catalog_compatibility(jp_fetch) == before


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"compute_capability": "ampere"}, 400, "compute capability must look like 8.6"),
        ({"driver_version": "latest"}, 400, "driver version must look like 535.54.03"),
        ({"env": "no-such-env"}, 404, "no environment with id or name 'no-such-env'"),
    ],
)
async def test_doctor_errors_are_json(jp_fetch, query, status, message):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("gpuenv", "api", "doctor", params=query)
    assert info.value.code == status
    body = json.loads(info.value.response.body)
    assert message in body["message"], (urlencode(query), body)


def test_doctor_route_is_documented():
    document = openapi_document()
    operation = document["paths"]["/gpuenv/api/doctor"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "driver_version",
        "compute_capability",
        "env",
    }
    schema = document["components"]["schemas"]["DoctorReport"]
    assert schema["required"] == ["host", "problems", "environments"]
