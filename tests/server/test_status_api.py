"""Invalid settings through a real ``jupyter server`` started with a config file.

The file holds several invalid ``c.GpuEnv`` values beside valid ones: the extension
still loads, the valid environments are listed and run kernels, and every invalid
setting is named (with its value and what was expected) by ``/gpuenv/api/status``, the
listing's ``problems``, ``jupyter gpuenv doctor`` and the server log; an invalid
``docker_images`` entry is listed with its problem and has no kernelspec. No
``/gpuenv/api`` answer is HTML or a 500.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from jupyter_gpuenv.docker import labels
from tests.provisioning.server_process import ServerProcess, start_server
from tests.support.venvs import make_venv

pytestmark = pytest.mark.docker

BAD_SETTINGS = {
    "c.GpuEnv.probe_timeout": "'fast'",
    "c.GpuEnv.gpus": "'some'",
    "c.GpuEnv.show_all_gpu_processes": "'sure'",
    "c.GpuEnv.docker_imagse": "{}",
    "c.GpuEnv.docker_images['typo']": None,  # values checked in the test
    "c.GpuEnv.docker_images['badgpus']": None,
}


def invalid_settings(venvs: Path, image: str) -> dict[str, Any]:
    """Valid sources and timeouts, plus the invalid settings of BAD_SETTINGS."""
    return {
        "venv_dirs": [str(venvs)],
        "kernel_start_timeout": 180.0,
        "docker_images": {
            "good": image,
            "typo": {"imgae": image},
            "badgpus": {"image": image, "gpus": "many"},
        },
        "probe_timeout": "fast",
        "gpus": "some",
        "show_all_gpu_processes": "sure",
        "docker_imagse": {},
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    python_kernel_image: str,
    docker_client: docker.DockerClient,
) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("invalid-settings")
    make_venv(base / "venvs" / "plain")
    root = base / "notebooks"
    root.mkdir()
    server = start_server(root, invalid_settings(base / "venvs", python_kernel_image))
    try:
        yield server
    finally:
        pid = server.proc.pid
        server.stop()
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{labels.SERVER_PID}={pid}"}
        ):
            container.remove(force=True)


def call(server: ServerProcess, path: str, method: str = "GET", body: Any = None) -> Any:
    """(status, body) of one request; every /gpuenv/api answer must be JSON."""
    status, payload = asyncio.run(server.request(method, path, body))
    if path.startswith("/gpuenv/api"):
        assert isinstance(payload, dict), (path, status, payload)
        assert status != 500, payload
    return status, payload


def test_status_names_every_invalid_setting(server: ServerProcess) -> None:
    status, body = call(server, "/gpuenv/api/status")
    assert status == 200
    assert body["admin"] is True
    by_setting = {p["setting"]: p for p in body["problems"]}
    assert set(by_setting) == set(BAD_SETTINGS), body
    for setting, value in BAD_SETTINGS.items():
        problem = by_setting[setting]
        if value is not None:
            assert problem["value"] == value
        assert problem["expected"] and problem["consequence"]
        assert problem["message"].startswith(f"{setting} = ")
    assert by_setting["c.GpuEnv.probe_timeout"]["expected"] == "a float"
    assert by_setting["c.GpuEnv.probe_timeout"]["consequence"] == "the default (60.0) is used"
    assert by_setting["c.GpuEnv.show_all_gpu_processes"]["expected"] == "a boolean"
    assert "did you mean docker_images" in by_setting["c.GpuEnv.docker_imagse"]["expected"]
    typo = by_setting["c.GpuEnv.docker_images['typo']"]
    assert "'image' key" in typo["expected"] and "imgae" in typo["value"]
    assert "'gpus'" in by_setting["c.GpuEnv.docker_images['badgpus']"]["expected"]


def test_listing_serves_valid_environments_and_lists_invalid_entries(
    server: ServerProcess,
) -> None:
    status, listing = call(server, "/gpuenv/api/environments")
    assert status == 200
    assert {p["setting"] for p in listing["problems"]} == set(BAD_SETTINGS)
    status, partial = call(server, "/gpuenv/api/environments?partial=true")
    assert status == 200 and partial["problems"] == listing["problems"], partial
    by_name = {env["name"]: env for env in listing["environments"]}
    assert {"plain", "good", "typo", "badgpus"} <= set(by_name), listing
    good = by_name["good"]
    assert good["python_version"] and not good["cannot_start"]
    assert not any("docker_images" in problem for problem in good["problems"]), good
    for name in ("typo", "badgpus"):
        env = by_name[name]
        assert env["cannot_start"], env
        assert env["problems"][0].startswith(f"c.GpuEnv.docker_images[{name!r}] is invalid")
    _, specs = call(server, "/api/kernelspecs")
    names = set(specs["kernelspecs"])
    assert {good["kernel_name"], by_name["plain"]["kernel_name"]} <= names
    assert not {by_name["typo"]["kernel_name"], by_name["badgpus"]["kernel_name"]} & names
    code, error = call(server, f"/gpuenv/api/environments/{by_name['typo']['id']}/export")
    assert code == 409 and "typo cannot be exported" in error["message"]


@pytest.mark.parametrize("name", ["plain", "good"])
def test_valid_environments_run_kernels(
    server: ServerProcess, name: str, docker_client: docker.DockerClient
) -> None:
    _, listing = call(server, "/gpuenv/api/environments")
    env = next(e for e in listing["environments"] if e["name"] == name)
    status, kernel = call(server, "/api/kernels", "POST", {"name": env["kernel_name"]})
    assert status == 201, (kernel, server.log_text()[-3000:])

    async def run() -> str:
        socket = await server.channels(kernel["id"])
        try:
            result = await socket.run(
                "import socket, sys; print(sys.prefix, socket.gethostname())", 240
            )
        finally:
            socket.close()
        return result.text

    try:
        prefix, hostname = asyncio.run(run()).split()
        containers = docker_client.containers.list(
            filters={"label": f"{labels.KERNEL_ID}={kernel['id']}"}
        )
        if name == "plain":
            assert prefix == env["location"]["prefix"] and not containers
        else:
            assert len(containers) == 1 and prefix != str(Path(sys.prefix)), (prefix, hostname)
    finally:
        call(server, f"/api/kernels/{kernel['id']}", "DELETE")


def test_no_html_and_no_500_from_the_api(server: ServerProcess) -> None:
    code, body = call(server, "/gpuenv/api/no-such-route")
    assert code == 404 and "no-such-route" in body["message"]
    code, body = call(server, "/gpuenv/api/doctor")
    assert code == 200 and {p["setting"] for p in body["problems"]} == set(BAD_SETTINGS)
    typo = next(e for e in body["environments"] if e["name"] == "typo")
    assert typo["verdict"] == "error"


def test_doctor_cli_reports_every_invalid_setting(server: ServerProcess) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "JPY_", "CONDA", "VIRTUAL_ENV"))
    }
    env.update(
        HOME=str(server.home),
        JUPYTER_CONFIG_DIR=str(server.home / "config"),
        JUPYTER_DATA_DIR=str(server.home / "data"),
        JUPYTER_PLATFORM_DIRS="0",
    )

    def doctor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jupyter_gpuenv.cli.main", "doctor", *args],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            check=False,
        )

    done = doctor()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Configuration: 6 invalid settings" in done.stdout, done.stdout
    for setting, value in BAD_SETTINGS.items():
        assert f"ERROR   {setting} = {value or ''}" in done.stdout, done.stdout
    assert "expected a float; the default (60.0) is used" in done.stdout
    assert "plain (venv" in done.stdout and "good (docker" in done.stdout
    report = json.loads(doctor("--json").stdout)
    assert {p["setting"] for p in report["problems"]} == set(BAD_SETTINGS)


def test_server_log_names_every_invalid_setting(server: ServerProcess) -> None:
    log = server.log_text()
    for setting in BAD_SETTINGS:
        assert f"jupyter_gpuenv: {setting} = " in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
