"""``metadata.gpuenv`` written by a real server on a real ``PUT /api/contents`` save, and
``GET /gpuenv/api/resolve`` answering from it.

The notebook's session runs a real kernel in a conda env whose fake PyTorch reports CUDA
12.1, so the recorded versions are the ones the probe read, not defaults.
"""

from __future__ import annotations

import json
import uuid

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gpuenv.environments.fingerprint import environment_fingerprint
from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.kernel.gpu_snapshot import GpuDevice, GpuProcess, GpuSnapshot, MigDevice
from jupyter_gpuenv.server.notebook_hook import gpus_used_by
from tests.support.fake_torch import TORCH_CU121
from tests.support.server_config import server_config

API = ("gpuenv", "api")
ENV_NAME = f"nbrec-{uuid.uuid4().hex[:6]}"


def admin_hook(model, path, contents_manager, **kwargs):
    """An admin's own c.ContentsManager.pre_save_hook: it must keep running."""
    model["content"].setdefault("metadata", {})["admin_hook"] = path


@pytest.fixture
def conda_env(tmp_path, conda_prefix_factory):
    return conda_prefix_factory(tmp_path / "envs" / ENV_NAME, torch=TORCH_CU121)


@pytest.fixture
def jp_server_config(conda_env):
    config = server_config(conda_envs_dirs=[str(conda_env.parent)])
    config["ContentsManager"] = {"pre_save_hook": admin_hook}
    return config


def notebook_model(metadata=None):
    return {
        "type": "notebook",
        "format": "json",
        "content": {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": metadata or {"kernelspec": {"name": "python3", "display_name": "P"}},
            "cells": [
                {
                    "cell_type": "code",
                    "id": "c1",
                    "metadata": {},
                    "execution_count": None,
                    "outputs": [],
                    "source": "print(1)",
                }
            ],
        },
    }


async def put(jp_fetch, path, model):
    return await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(model))


async def saved_metadata(jp_fetch, path):
    response = await jp_fetch("api", "contents", path, params={"content": "1"})
    return json.loads(response.body)["content"]["metadata"]


async def environment(jp_fetch):
    listing = json.loads((await jp_fetch(*API, "environments")).body)["environments"]
    (env,) = [e for e in listing if e["name"] == ENV_NAME]
    return env


async def start_session(jp_fetch, path, kernel_name):
    body = {"path": path, "type": "notebook", "name": "", "kernel": {"name": kernel_name}}
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    return json.loads(response.body)


async def test_a_save_with_a_gpuenv_kernel_records_its_environment(
    jp_fetch, jp_root_dir, conda_env, tmp_path
):
    (jp_root_dir / "work").mkdir()
    path = "work/train.ipynb"
    await put(jp_fetch, path, notebook_model())
    assert "gpuenv" not in await saved_metadata(jp_fetch, path)  # no kernel yet

    env = await environment(jp_fetch)
    session = await start_session(jp_fetch, path, env["kernel_name"])
    try:
        await put(jp_fetch, path, notebook_model())
        metadata = await saved_metadata(jp_fetch, path)
        record = metadata["gpuenv"]
        assert metadata["admin_hook"] == path  # the admin's hook ran too
        expected_fp = environment_fingerprint(Environment(**{**env, "settings": {}}))
        spec = record["spec"]  # the --no-builds export, without the host's prefix
        assert spec.startswith(f"name: {ENV_NAME}\n") and "dependencies:" in spec
        assert "prefix:" not in spec and str(conda_env) not in spec
        assert {k: record[k] for k in record if k not in ("recorded_at", "spec")} == {
            "environment_id": env["id"],
            "name": ENV_NAME,
            "kind": "conda",
            "display_name": env["display_name"],
            "image": None,
            "image_id": None,
            "python_version": env["python_version"],
            "torch_version": "2.9.0+cu121",
            "cuda_version": "12.1",
            "cudnn_version": env["cudnn_version"],
            "gpus": [],
            "fingerprint": expected_fp,
        }
        assert expected_fp and expected_fp.startswith("sha256:")
        assert record["recorded_at"].endswith("Z")
        on_disk = (jp_root_dir / path).read_text()
        assert str(tmp_path) not in json.dumps(record) and "/bin/python" not in on_disk

        # The same content saved again keeps the record as it was (no churn in diffs).
        again = notebook_model({"gpuenv": record})
        await put(jp_fetch, path, again)
        assert (await saved_metadata(jp_fetch, path))["gpuenv"] == record

        resolved = json.loads((await jp_fetch(*API, "resolve", params={"path": path})).body)
        assert resolved["kernel_name"] == env["kernel_name"]
        assert resolved["rule"] == "fingerprint" and resolved["exact"] is True
        assert resolved["record"] == record and resolved["mismatch"] is None
    finally:
        await jp_fetch("api", "sessions", session["id"], method="DELETE")

    # Without a kernel, a client whose model lacks the record does not drop it.
    await put(jp_fetch, path, notebook_model())
    assert (await saved_metadata(jp_fetch, path))["gpuenv"] == record


async def test_a_broken_record_never_fails_the_save(jp_fetch, jp_serverapp, jp_root_dir):
    path = "broken.ipynb"
    await put(jp_fetch, path, notebook_model())
    env = await environment(jp_fetch)
    session = await start_session(jp_fetch, path, env["kernel_name"])
    catalog = jp_serverapp.web_app.settings["gpuenv"].catalog

    def broken():
        raise RuntimeError("catalog exploded")

    catalog.cached_environments = broken
    try:
        model = notebook_model()
        model["content"]["cells"][0]["source"] = "print('kept')"
        await put(jp_fetch, path, model)
        saved = json.loads((jp_root_dir / path).read_text())
        assert "".join(saved["cells"][0]["source"]) == "print('kept')"
        assert "gpuenv" not in saved["metadata"] and saved["metadata"]["admin_hook"] == path
    finally:
        del catalog.cached_environments
        await jp_fetch("api", "sessions", session["id"], method="DELETE")


async def test_resolve_errors_are_json(jp_fetch, jp_root_dir):
    other = {
        "environment_id": "docker-gone-00000000",
        "name": "gone",
        "kind": "docker",
        "image": "gone:1",
        "image_id": "sha256:" + "0" * 64,
        "torch_version": "2.1.0",
        "cuda_version": "11.8",
    }
    await put(jp_fetch, "plain.ipynb", notebook_model())
    await put(jp_fetch, "elsewhere.ipynb", notebook_model({"gpuenv": other}))
    (jp_root_dir / "text.txt").write_text("hello")
    cases = [
        ({}, 400, "path"),
        ({"path": "missing.ipynb"}, 404, "missing.ipynb"),
        ({"path": "plain.ipynb"}, 400, "metadata.gpuenv"),
        ({"path": "elsewhere.ipynb"}, 404, "PyTorch 2.1 with CUDA 11.8"),
        ({"path": "text.txt"}, 400, "Notebook"),
    ]
    for params, status, words in cases:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(*API, "resolve", params=params)
        body = json.loads(info.value.response.body)
        assert info.value.code == status, body
        assert words in body["message"], body


@pytest.mark.docker
class TestDockerKernel:
    """A Docker kernel's record names the image and its id, and resolves by the image id."""

    KEY = f"nbrec-img-{uuid.uuid4().hex[:6]}"

    @pytest.fixture
    def jp_server_config(self, python_kernel_image):
        return server_config(docker_images={self.KEY: python_kernel_image})

    async def test_record_names_the_image(self, jp_fetch, jp_root_dir, docker_client):
        listing = json.loads((await jp_fetch(*API, "environments")).body)["environments"]
        (env,) = [e for e in listing if e["name"] == self.KEY]
        path = "image.ipynb"
        await put(jp_fetch, path, notebook_model())
        session = await start_session(jp_fetch, path, env["kernel_name"])
        try:
            await put(jp_fetch, path, notebook_model())
        finally:
            await jp_fetch("api", "sessions", session["id"], method="DELETE")
        record = (await saved_metadata(jp_fetch, path))["gpuenv"]
        image_id = env["location"]["image_id"]
        assert image_id.startswith("sha256:")
        assert record["kind"] == "docker" and record["name"] == self.KEY
        assert record["image"] == env["location"]["image"]
        assert record["image_id"] == record["fingerprint"] == image_id
        assert record["python_version"] == env["python_version"]
        text = json.dumps(record)
        assert str(jp_root_dir) not in text and "/usr/" not in text

        resolved = json.loads((await jp_fetch(*API, "resolve", params={"path": path})).body)
        assert resolved["rule"] == "image_id" and resolved["kernel_name"] == env["kernel_name"]


def test_gpus_used_by_a_kernel_are_named_once():
    snapshot = GpuSnapshot(
        available=True,
        gpus=[
            GpuDevice(
                index=0,
                name="NVIDIA A100-SXM4-40GB",
                processes=[
                    GpuProcess(pid=1, kernel_id="k1"),
                    GpuProcess(pid=2, kernel_id="k1"),
                ],
            ),
            GpuDevice(
                index=1,
                name="NVIDIA H100 80GB HBM3",
                processes=[
                    GpuProcess(pid=3, kernel_id="k2"),
                ],
            ),
            GpuDevice(
                index=2,
                name="NVIDIA A100-SXM4-80GB",
                mig_devices=[MigDevice(index=0, uuid="MIG-a", name="NVIDIA A100 1g.10gb")],
                processes=[GpuProcess(pid=4, kernel_id="k1", mig_device_uuid="MIG-a")],
            ),
        ],
    )
    assert gpus_used_by(snapshot, "k1") == ["NVIDIA A100-SXM4-40GB", "NVIDIA A100 1g.10gb"]
    assert gpus_used_by(snapshot, "k3") == []
