"""Kernels whose ipykernel reads CurveZMQ keys (>= 7.4) get encrypted channels with no
configuration: a local conda kernel in a real server process. Its connection file carries
the keys, it answers, and its plain-text warning is gone."""

from __future__ import annotations

import json

import pytest

from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.provisioning.kernel_side import curve_capable

PLAIN_TEXT_WARNING = "Kernel is running over TCP without encryption"


def connection_keys(server, kernel_id: str) -> set[str]:
    path = server.home / "runtime" / f"kernel-{kernel_id}.json"
    return {k for k in json.loads(path.read_text()) if k.startswith("curve_")}


async def start_and_run(server, name: str) -> tuple[str, str]:
    status, listing = await server.request("GET", "/gpuenv/api/environments")
    (env,) = [e for e in listing["environments"] if e["name"] == name]
    status, kernel = await server.request("POST", "/api/kernels", {"name": env["kernel_name"]})
    assert status == 201, kernel
    ws = await server.channels(kernel["id"])
    try:
        result = await ws.run("print(6 * 7)")
    finally:
        ws.close()
    return kernel["id"], result.text


async def test_local_kernels_use_curve(server_processes, tmp_path, conda_prefix_factory):
    prefix = conda_prefix_factory(tmp_path / "envs" / "curvy")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    server = server_processes(
        notebooks,
        {"conda_envs_dirs": [str(prefix.parent)]},
    )
    kernel_id, text = await start_and_run(server, "curvy")
    assert text == "42\n"
    assert connection_keys(server, kernel_id) == {"curve_publickey", "curve_secretkey"}
    await server.request("DELETE", f"/api/kernels/{kernel_id}")
    assert PLAIN_TEXT_WARNING not in server.log_text()


@pytest.mark.parametrize(
    ("fields", "capable"),
    [
        ({"ipykernel": True, "ipykernel_version": "7.4.0"}, True),
        ({"ipykernel": True, "ipykernel_version": "6.29.5"}, False),
        ({"ipykernel": True, "ipykernel_version": None}, False),
        ({"kind": "docker", "ipykernel": False, "python_version": "3.11.2"}, True),  # layer
        ({"kind": "docker", "ipykernel": False, "python_version": "3.10.12"}, False),
    ],
)
def test_which_ipykernels_read_curve_keys(fields, capable):
    values = {
        "id": "conda-x-1",
        "name": "x",
        "kind": "conda",
        "display_name": "x",
        "kernel_name": "gpuenv-conda-x-1",
        "location": {},
        **fields,
    }
    assert curve_capable(Environment(**values)) is capable
