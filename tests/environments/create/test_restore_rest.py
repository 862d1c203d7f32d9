"""``POST /gpuenv/api/notebooks/restore`` through a real server: a notebook saved while a kernel
of environment A ran gets A's record with its spec (the save hook); A is deleted; restoring
creates it again as a job, and a second restore finds it present."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from tests.environments.create.test_create_rest import follow, post
from tests.support.server_config import server_config

API = ("gpuenv", "api")


@pytest.fixture
def jp_server_config(create_setup):
    return server_config(**create_setup.traits)


def notebook_model(metadata: dict | None = None) -> dict:
    content = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": metadata or {},
        "cells": [],
    }
    return {"type": "notebook", "format": "json", "content": content}


async def restore(jp_fetch, body: dict) -> tuple[int, dict]:
    try:
        response = await jp_fetch(
            *API, "notebooks", "restore", method="POST", body=json.dumps(body)
        )
    except HTTPClientError as err:
        assert err.response is not None
        return err.code, json.loads(err.response.body)
    return response.code, json.loads(response.body)


async def test_restore_a_deleted_environment_from_a_saved_notebook(
    jp_fetch, jp_root_dir, create_setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the restored pip section reads the wheelhouse
    monkeypatch.setenv("PIP_FIND_LINKS", str(create_setup.wheelhouse))
    text = create_setup.environment_yml(
        ["python", "pip", "gpuenv-demo"], name="alpha", pip=["ipykernel"]
    ).read_text()
    code, job = await post(jp_fetch, {"yaml": text, "cuda": "12.4"})
    assert code == 202, job
    created = await follow(jp_fetch, job["id"])
    assert created["state"] == "done", created

    path = "train.ipynb"
    await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(notebook_model()))
    env = json.loads((await jp_fetch(*API, "environments", created["environment_id"])).body)
    body = {"path": path, "type": "notebook", "name": "", "kernel": {"name": env["kernel_name"]}}
    session = json.loads(
        (await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))).body
    )
    try:
        await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(notebook_model()))
    finally:
        await jp_fetch("api", "sessions", session["id"], method="DELETE")
    record = json.loads((jp_root_dir / path).read_text())["metadata"]["gpuenv"]
    assert record["environment_id"] == env["id"] and "gpuenv-demo=1.0" in record["spec"]

    code, present = await restore(jp_fetch, {"path": path})
    assert code == 200 and present["state"] == "present", present
    assert present["kernel_name"] == env["kernel_name"]

    await jp_fetch(*API, "environments", env["id"], method="DELETE")
    code, answer = await restore(jp_fetch, {"path": path, "cuda": "12.4"})
    assert code == 202 and answer["state"] == "creating", answer
    assert answer["job"]["action"] == "restore" and answer["job"]["engine"] == "rattler"
    done = await follow(jp_fetch, answer["job"]["id"])
    assert done["state"] == "done", done
    assert [s["key"] for s in done["steps"]][-2:] == ["pip", "catalog"]
    assert done["prefix"] == str(create_setup.envs / "alpha")
    assert (create_setup.envs / "alpha" / "share" / "gpuenv-demo" / "variant").read_text() == (
        "cuda\n"
    )
    code, again = await restore(jp_fetch, {"path": path})
    assert code == 200 and again["state"] == "present"
    assert again["environment_id"] == done["environment_id"]


async def test_restore_answers_for_images_missing_specs_and_bad_bodies(
    jp_fetch, jp_root_dir, create_setup
) -> None:
    image = {
        "environment_id": "img1",
        "name": "train",
        "kind": "docker",
        "display_name": "train",
        "image": "ghcr.io/lab/train:2.1",
        "image_digest": "ghcr.io/lab/train@sha256:" + "3" * 64,
    }
    (jp_root_dir / "image.ipynb").write_text(
        json.dumps(notebook_model({"gpuenv": image})["content"])
    )
    code, answer = await restore(jp_fetch, {"path": "image.ipynb"})
    assert code == 200 and answer["state"] == "pull", answer
    assert answer["pull_command"] == f"docker pull ghcr.io/lab/train@sha256:{'3' * 64}"

    conda = {"environment_id": "c1", "name": "gone", "kind": "conda", "display_name": "gone"}
    (jp_root_dir / "nospec.ipynb").write_text(
        json.dumps(notebook_model({"gpuenv": conda})["content"])
    )
    code, error = await restore(jp_fetch, {"path": "nospec.ipynb"})
    assert code == 409 and "carries no environment spec" in error["message"]

    (jp_root_dir / "plain.ipynb").write_text(json.dumps(notebook_model()["content"]))
    code, error = await restore(jp_fetch, {"path": "plain.ipynb"})
    assert code == 400 and "metadata.gpuenv" in error["message"]
    code, error = await restore(jp_fetch, {"name": "x"})
    assert code == 400 and "'path'" in error["message"]
    code, error = await restore(jp_fetch, {"path": "a.ipynb", "colour": "red"})
    assert code == 400 and "unknown fields ['colour']" in error["message"]
    assert create_setup.leftovers() == []
