"""The environments REST API through a real Jupyter server (pytest-jupyter)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from tornado.httpclient import HTTPClientError

from .conftest import TORCH_CU121

UNREACHABLE = "unix:///nonexistent/gpuenv-test/docker.sock"


@pytest.fixture
def env_dirs(tmp_path: Path, conda_prefix_factory, venv_factory) -> dict[str, Path]:
    vision = conda_prefix_factory(
        tmp_path / "conda-envs" / "vision", torch=TORCH_CU121, pip_packages=[("timm", "1.0.9")]
    )
    myvenv = venv_factory(tmp_path / "venvs" / "myvenv")
    return {"conda": vision.parent, "venv": myvenv.parent}


@pytest.fixture
def docker_images() -> dict:
    return {}


@pytest.fixture
def jp_server_config(env_dirs, docker_images):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_gpuenv": True}},
        "GpuEnv": {
            "conda_envs_dirs": [str(env_dirs["conda"])],
            "venv_dirs": [str(env_dirs["venv"])],
            "docker_images": docker_images,
            "docker_label_discovery": False,
            "docker_discover_pytorch_images": False,
        },
    }


@pytest.fixture
def catalog(jp_serverapp):
    return jp_serverapp.web_app.settings["gpuenv"].catalog


async def fetch_json(jp_fetch, *parts, method="GET", **params):
    # A first listing probes images; a large one on a loaded machine takes more than 20 s.
    kwargs = {"method": method, "request_timeout": 300}
    if params:
        kwargs["params"] = params
    if method == "POST":
        kwargs["body"] = ""
    response = await jp_fetch("gpuenv", "api", *parts, **kwargs)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def fetch_error(jp_fetch, *parts, **params) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("gpuenv", "api", *parts, params=params)
    body = json.loads(info.value.response.body)
    assert body["status"] == info.value.code
    return info.value.code, body


async def test_list_and_get(jp_fetch, catalog) -> None:
    listing = await fetch_json(jp_fetch, "environments")
    by_name = {env["name"]: env for env in listing["environments"]}
    vision = by_name["vision"]
    assert vision["torch_version"] == "2.9.0+cu121"
    assert vision["cuda_version"] == "12.1"
    assert vision["cudnn_version"] == "9.1.0"
    assert vision["display_name"] == "vision (conda) · PyTorch 2.9 · CUDA 12.1"
    assert vision["kernel_name"] == f"gpuenv-{vision['id']}"
    assert set(vision) >= {
        "id", "name", "kind", "display_name", "kernel_name", "python_version", "torch_version",
        "cuda_version", "cudnn_version", "ipykernel", "location", "labels", "problems",
    }  # fmt: skip
    assert "settings" not in vision
    assert by_name["myvenv"]["kind"] == "venv"
    assert catalog.probe_counter.total == 2
    again = await fetch_json(jp_fetch, "environments")
    assert again == listing
    assert catalog.probe_counter.total == 2
    one = await fetch_json(jp_fetch, "environments", vision["id"])
    assert one == vision


async def test_refresh_picks_up_new_environments(
    jp_fetch, catalog, env_dirs, conda_prefix_factory
) -> None:
    await fetch_json(jp_fetch, "environments")
    conda_prefix_factory(env_dirs["conda"] / "fresh")
    refreshed = await fetch_json(jp_fetch, "environments", "refresh", method="POST")
    assert "fresh" in {env["name"] for env in refreshed["environments"]}
    assert catalog.probe_counter.total == 3
    shutil.rmtree(env_dirs["conda"] / "fresh")
    listing = await fetch_json(jp_fetch, "environments", refresh="true")
    assert "fresh" not in {env["name"] for env in listing["environments"]}
    assert catalog.probe_counter.total == 3


async def test_export_download(jp_fetch) -> None:
    listing = await fetch_json(jp_fetch, "environments")
    vision = next(env for env in listing["environments"] if env["name"] == "vision")
    response = await jp_fetch("gpuenv", "api", "environments", vision["id"], "export")
    assert response.headers["Content-Type"] == "text/yaml; charset=utf-8"
    assert (
        response.headers["Content-Disposition"] == 'attachment; filename="vision-environment.yml"'
    )
    data = yaml.safe_load(response.body)
    assert list(data) == ["name", "channels", "dependencies", "prefix"]
    assert "pytorch=2.9.0=py3.11_cuda12.1_cudnn9.1.0_0" in data["dependencies"]
    assert data["dependencies"][-1] == {"pip": ["timm==1.0.9"]}
    no_builds = await jp_fetch(
        "gpuenv", "api", "environments", vision["id"], "export", params={"no_builds": "true"}
    )
    assert "pytorch=2.9.0" in yaml.safe_load(no_builds.body)["dependencies"]
    history = await jp_fetch(
        "gpuenv", "api", "environments", vision["id"], "export", params={"from_history": "1"}
    )
    assert yaml.safe_load(history.body)["channels"] == ["defaults"]


async def test_bad_input(jp_fetch, env_dirs) -> None:
    code, body = await fetch_error(jp_fetch, "environments", "conda-nope-12345678")
    assert code == 404 and "conda-nope-12345678" in body["message"]
    code, body = await fetch_error(jp_fetch, "environments", "conda-nope-12345678", "export")
    assert code == 404
    listing = await fetch_json(jp_fetch, "environments")
    vision = next(env for env in listing["environments"] if env["name"] == "vision")
    code, body = await fetch_error(
        jp_fetch, "environments", vision["id"], "export", no_builds="maybe"
    )
    assert code == 400 and "no_builds" in body["message"]
    shutil.rmtree(env_dirs["conda"] / "vision")
    code, body = await fetch_error(jp_fetch, "environments", vision["id"], "export")
    assert code == 404
    assert str(env_dirs["conda"] / "vision") in body["message"]


async def test_requests_need_the_token(jp_fetch) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("gpuenv", "api", "environments", headers={"Authorization": ""})
    assert info.value.code in (401, 403)


@pytest.mark.docker
class TestDockerDown:
    @pytest.fixture
    def docker_images(self, monkeypatch) -> dict:
        monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)
        return {"torch": "pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime"}

    async def test_docker_down_lists_local_and_export_is_503(self, jp_fetch) -> None:
        listing = await fetch_json(jp_fetch, "environments")
        by_name = {env["name"]: env for env in listing["environments"]}
        assert by_name["vision"]["problems"] == []
        assert by_name["torch"]["problems"][0].startswith("Docker daemon is not reachable")
        code, body = await fetch_error(jp_fetch, "environments", by_name["torch"]["id"], "export")
        assert code == 503 and "Docker daemon is not reachable" in body["message"]


@pytest.mark.docker
class TestDockerImage:
    @pytest.fixture
    def docker_images(self, torch_cpu_image) -> dict:
        return {"torch": torch_cpu_image}

    async def test_torch_image_through_rest(self, jp_fetch, catalog) -> None:
        listing = await fetch_json(jp_fetch, "environments")
        torch_env = next(env for env in listing["environments"] if env["name"] == "torch")
        assert torch_env["torch_version"] == "2.13.0+cpu"
        assert torch_env["cuda_version"] is None
        assert torch_env["display_name"] == "torch (docker) · PyTorch 2.13 · CPU"
        response = await jp_fetch("gpuenv", "api", "environments", torch_env["id"], "export")
        assert "torch==2.13.0+cpu" in yaml.safe_load(response.body)["dependencies"][2]["pip"]
        await fetch_json(jp_fetch, "environments")
        assert catalog.probe_counter.docker == 1
