"""``POST``/``DELETE /gpuenv/api/environments`` and the create jobs, through a real Jupyter
server (pytest-jupyter) creating from the session's local channel with py-rattler."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import yaml
from tornado.httpclient import HTTPClientError

API = ("gpuenv", "api")
SERVER_TRAITS: dict = {}


@pytest.fixture
def jp_server_config(create_setup):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_gpuenv": True}},
        "GpuEnv": {**create_setup.traits, **SERVER_TRAITS},
    }


def file_text(setup, dependencies, name="demo") -> str:
    data = {"name": name, "channels": [setup.channel_url], "dependencies": dependencies}
    return yaml.safe_dump(data, sort_keys=False)


async def post(jp_fetch, body) -> tuple[int, dict]:
    try:
        response = await jp_fetch(
            *API, "environments", method="POST", body=json.dumps(body), request_timeout=120
        )
    except HTTPClientError as err:
        assert err.response is not None
        return err.code, json.loads(err.response.body)
    return response.code, json.loads(response.body) | {"location": response.headers["Location"]}


async def follow(jp_fetch, job_id: str) -> dict:
    for _ in range(600):
        response = await jp_fetch(*API, "environments", "jobs", job_id)
        job = json.loads(response.body)
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} still running: {job}")


async def test_create_follow_clone_and_delete(jp_fetch, create_setup) -> None:
    body = {"yaml": file_text(create_setup, ["gpuenv-demo", "gpuenv-tool"]), "cuda": "12.4"}
    code, job = await post(jp_fetch, body)
    assert code == 202, job
    assert job["location"].endswith(f"/gpuenv/api/environments/jobs/{job['id']}")
    assert job["engine"] == "rattler" and job["cuda"] == "12.4"
    assert job["prefix"] == str(create_setup.envs / "demo")
    done = await follow(jp_fetch, job["id"])
    assert done["state"] == "done", done
    assert [s["key"] for s in done["steps"]] == ["solve", "download", "link", "catalog"]
    assert done["environment_id"]
    listing = json.loads((await jp_fetch(*API, "environments")).body)
    demo = next(e for e in listing["environments"] if e["id"] == done["environment_id"])
    assert demo["location"]["prefix"] == str(create_setup.envs / "demo")
    assert (
        create_setup.envs / "demo" / "share" / "gpuenv-demo" / "variant"
    ).read_text() == "cuda\n"
    progress = json.loads((await jp_fetch(*API, "progress")).body)
    assert done["id"] in [c["id"] for c in progress["creates"]]

    code, clone = await post(jp_fetch, {"clone": demo["id"], "name": "copy"})
    assert code == 202, clone
    cloned = await follow(jp_fetch, clone["id"])
    assert cloned["state"] == "done" and cloned["action"] == "clone", cloned
    # export --no-builds: the channel's cpu build of gpuenv-demo, same version
    assert (create_setup.envs / "copy" / "conda-meta").is_dir()

    response = await jp_fetch(*API, "environments", demo["id"], method="DELETE")
    assert json.loads(response.body) == {
        "id": demo["id"],
        "removed": str(create_setup.envs / "demo"),
    }
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "environments", demo["id"])
    assert info.value.code == 404
    assert create_setup.leftovers() == ["copy"]


async def test_taken_bad_yaml_bad_body_and_conflict(jp_fetch, create_setup) -> None:
    (create_setup.envs / "demo" / "conda-meta").mkdir(parents=True)
    code, error = await post(jp_fetch, {"yaml": file_text(create_setup, ["gpuenv-lib"])})
    assert code == 409 and "already exists (an environment)" in error["message"]

    code, error = await post(jp_fetch, {"yaml": "name: x\ndependencies:\n  - a\n  b: [\n"})
    assert code == 400 and "line 4" in error["message"]
    code, error = await post(jp_fetch, {"yaml": "name: x\nchanels: [c]\ndependencies: [a]\n"})
    assert code == 400 and "line 2: unknown key 'chanels'" in error["message"]
    code, error = await post(jp_fetch, {"yaml": "x", "clone": "y"})
    assert code == 400 and "either 'yaml'" in error["message"]
    code, error = await post(jp_fetch, {"yaml": file_text(create_setup, ["a"]), "cuda": "twelve"})
    assert code == 400 and "not a version" in error["message"]
    both = {"yaml": file_text(create_setup, ["a"]), "name": "n", "prefix": str(create_setup.envs)}
    code, error = await post(jp_fetch, both)
    assert code == 400 and "not both" in error["message"]
    code, error = await post(jp_fetch, {"yaml": file_text(create_setup, ["a"]), "prefix": "rel/x"})
    assert code == 400 and "absolute path" in error["message"]

    unreachable = "name: far\nchannels: [file:///nonexistent/channel]\ndependencies: [a]\n"
    code, job = await post(jp_fetch, {"yaml": unreachable})
    assert code == 202
    failed = await follow(jp_fetch, job["id"])
    assert failed["state"] == "failed" and failed["error"]["status"] == 502, failed
    assert "reading the channels failed" in failed["error"]["message"]

    text = file_text(create_setup, ["gpuenv-lib>=2", "gpuenv-app"], name="clash")
    code, job = await post(jp_fetch, {"yaml": text})
    assert code == 202
    failed = await follow(jp_fetch, job["id"])
    assert failed["state"] == "failed" and failed["error"]["status"] == 422
    assert "gpuenv-app" in failed["error"]["message"]
    assert create_setup.leftovers() == ["demo"]
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "environments", "jobs", "nosuchjob")
    assert info.value.code == 404


class TestCreationOff:
    @pytest.fixture
    def jp_server_config(self, create_setup):
        traits = {**create_setup.traits, "environment_create_dirs": []}
        return {"ServerApp": {"jpserver_extensions": {"jupyter_gpuenv": True}}, "GpuEnv": traits}

    async def test_post_is_403(self, jp_fetch, create_setup) -> None:
        code, error = await post(jp_fetch, {"yaml": file_text(create_setup, ["gpuenv-lib"])})
        assert code == 403 and "turned off" in error["message"]
        assert create_setup.leftovers() == []


class TestHubUser:
    """A JupyterHub user's server: only under the user's home unless the admin says more."""

    @pytest.fixture
    def jp_server_config(self, create_setup):
        home_envs = create_setup.home / ".conda" / "envs"
        traits = {
            **create_setup.traits,
            "hub_user": "alice",
            "conda_envs_dirs": [str(create_setup.envs), str(home_envs)],
        }
        return {"ServerApp": {"jpserver_extensions": {"jupyter_gpuenv": True}}, "GpuEnv": traits}

    async def test_only_under_home(self, jp_fetch, create_setup) -> None:
        outside = str(create_setup.envs / "mine")
        text = file_text(create_setup, ["gpuenv-lib"])
        code, error = await post(jp_fetch, {"yaml": text, "prefix": outside})
        assert code == 403 and str(create_setup.home) in error["message"]
        code, job = await post(jp_fetch, {"yaml": text})
        assert code == 202
        assert Path(job["prefix"]) == create_setup.home / ".conda" / "envs" / "demo"
        assert (await follow(jp_fetch, job["id"]))["state"] == "done"
        assert create_setup.leftovers() == []


async def test_an_export_posted_back_makes_an_equal_environment_whose_kernel_runs(
    jp_fetch, jp_serverapp, create_setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET .../export?no_builds=true`` of one environment, posted under another name: the
    same package names and versions, and a kernel started through the REST API runs."""
    source = {
        "name": "alpha",
        "channels": [create_setup.channel_url],
        "dependencies": [
            "python",
            "pip",
            "gpuenv-demo",
            {"pip": [*create_setup.pip_offline(), "ipykernel"]},
        ],
    }
    code, job = await post(jp_fetch, {"yaml": yaml.safe_dump(source), "cuda": "12.4"})
    assert code == 202, job
    alpha = await follow(jp_fetch, job["id"])
    assert alpha["state"] == "done", alpha
    exported = (
        await jp_fetch(*API, "environments", alpha["environment_id"], "export",
                       params={"no_builds": "true"})
    ).body.decode()  # fmt: skip
    # The export names no wheelhouse: pip reads the user's pip config, as a user's would.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(create_setup.wheelhouse))
    code, job = await post(jp_fetch, {"yaml": exported, "name": "beta", "cuda": "12.4"})
    assert code == 202, job
    beta = await follow(jp_fetch, job["id"])
    assert beta["state"] == "done", beta
    again = (
        await jp_fetch(*API, "environments", beta["environment_id"], "export",
                       params={"no_builds": "true"})
    ).body.decode()  # fmt: skip
    first, second = yaml.safe_load(exported), yaml.safe_load(again)
    for data in (first, second):
        data.pop("name"), data.pop("prefix", None)
    assert second == first

    listing = json.loads((await jp_fetch(*API, "environments")).body)
    (env,) = [e for e in listing["environments"] if e["id"] == beta["environment_id"]]
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": env["kernel_name"]})
    )
    kernel_id = json.loads(response.body)["id"]
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        outputs: list[str] = []
        reply = await client.execute_interactive(
            "import sys; print(sys.prefix)",
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
            timeout=120,
        )
        assert reply["content"]["status"] == "ok"
        assert "".join(outputs).strip() == str(create_setup.envs / "beta")
    finally:
        client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_cancel_stops_a_waiting_pip_at_once_and_leaves_nothing(
    jp_fetch, create_setup, stalled_index
) -> None:
    pip = ["--no-index", f"--find-links {stalled_index.url}", "gpuenv-not-in-any-index"]
    body = {"yaml": file_text(create_setup, ["python", "pip", {"pip": pip}], name="stalled")}
    code, job = await post(jp_fetch, body)
    assert code == 202, job
    for _ in range(600):  # until pip is waiting on the index
        current = json.loads((await jp_fetch(*API, "environments", "jobs", job["id"])).body)
        if stalled_index.taken or current["state"] != "running":
            break
        await asyncio.sleep(0.1)
    assert stalled_index.taken, current
    assert current["steps"][-1]["key"] == "pip"

    cancelled_at = time.monotonic()
    response = await jp_fetch(*API, "environments", "jobs", job["id"], method="DELETE")
    assert response.code == 202
    assert json.loads(response.body)["cancelled"] is True
    ended = await follow(jp_fetch, job["id"])
    # The index never answered: pip alone would still wait for its 15 s timeout.
    assert time.monotonic() - cancelled_at < 10
    assert ended["state"] == "failed" and ended["cancelled"] is True
    assert ended["error"] == {
        "message": "the create was cancelled; nothing was left behind",
        "status": 499,
    }
    assert ended["steps"][-1]["key"] == "pip" and ended["steps"][-1]["state"] == "failed"
    assert await asyncio.to_thread(stalled_index.closed_by_pip, 10)
    assert create_setup.leftovers() == []

    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "environments", "jobs", job["id"], method="DELETE")
    assert info.value.code == 409
    assert "has ended (failed)" in json.loads(info.value.response.body)["message"]
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "environments", "jobs", "nosuchjob", method="DELETE")
    assert info.value.code == 404


async def test_a_finished_create_cannot_be_cancelled(jp_fetch, create_setup) -> None:
    code, job = await post(jp_fetch, {"yaml": file_text(create_setup, ["gpuenv-tool"])})
    assert code == 202, job
    done = await follow(jp_fetch, job["id"])
    assert done["state"] == "done" and done["cancelled"] is False
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "environments", "jobs", job["id"], method="DELETE")
    assert info.value.code == 409
    assert create_setup.leftovers() == ["demo"]
