"""A local (venv) kernel start records its steps too, ending with the kernel started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.provisioning.conftest import environment_named
from tests.support.server_config import server_config


@pytest.fixture
def jp_server_config(tmp_path: Path, venv_factory):
    venv_factory(tmp_path / "venvs" / "steps")
    return server_config(venv_dirs=[str(tmp_path / "venvs")])


async def test_a_venv_start_records_its_steps(jp_fetch) -> None:
    env = await environment_named(jp_fetch, "steps")
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": env["kernel_name"]})
    )
    kernel_id = json.loads(response.body)["id"]
    try:
        body = await jp_fetch("gpuenv", "api", "progress", params={"kernel_id": kernel_id})
        (start,) = json.loads(body.body)["starts"]
        keys = [s["key"] for s in start["steps"]]
        assert keys == ["environment", "activation", "process", "ready"]
        assert start["state"] == "ready" and start["environment"]["id"] == env["id"]
        assert start["steps"][2]["message"].startswith(f"Starting {env['python_executable']}")
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
