"""A real JupyterHub with two users of different GPU grants, driven through its REST API.

Alice is granted GPU 0, Bob GPU 1. Both servers run jupyter-gpuenv with the admin policy
(``restrict_to_configured_images``): one configured Docker image, one venv, and a local
image carrying the discovery label that the policy must keep out of the list.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from jupyter_gpuenv.docker import labels
from tests.hub.hub_runner import FAKE_GPU_UUIDS, Hub, HubUnavailable, execute, wait_for
from tests.support.docker_engine import running_in_ci
from tests.support.venvs import make_venv

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(1200)]

SUFFIX = secrets.token_hex(3)
ALICE, BOB = f"alice{SUFFIX}", f"bob{SUFFIX}"
GRANTS = {ALICE: "0", BOB: "1"}
FORBIDDEN_IMAGE = "someone/else:latest"

SINGLEUSER_CONFIG = """# jupyter_server_config.py of every single-user server (the admin's)
c.GpuEnv.docker_images = {{"python": {{"image": {image!r}, "gpus": "none"}}}}
c.GpuEnv.restrict_to_configured_images = True
c.GpuEnv.docker_label_discovery = True
c.GpuEnv.venv_dirs = [{venvs!r}]
c.GpuEnv.conda_envs_dirs = [{conda!r}]
c.GpuEnv.gpus = "all"
c.GpuEnv.gpu_sample_interval = 0.5
c.GpuEnv.kernel_start_timeout = 180
"""


@pytest.fixture(scope="module")
def labelled_image(docker_client: docker.DockerClient, python_kernel_image: str) -> Iterator[str]:
    """A local image with the opt-in discovery label: listed on a laptop, not on this Hub."""
    tag = f"gpuenv-test/hub-labelled:{SUFFIX}"
    container = docker_client.containers.create(python_kernel_image, command=["true"])
    try:
        container.commit(
            repository=tag.split(":")[0],
            tag=SUFFIX,
            changes=[f"LABEL {labels.IMAGE_ENABLE}=true"],
        )
    finally:
        container.remove(force=True)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    python_kernel_image: str,
    labelled_image: str,
) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("hub")
    envs = root / "envs"
    make_venv(envs / "venvs" / "demo")
    (envs / "conda").mkdir()
    config = SINGLEUSER_CONFIG.format(
        image=python_kernel_image, venvs=str(envs / "venvs"), conda=str(envs / "conda")
    )
    try:
        hub = Hub(root, GRANTS, config)
        hub.start()
    except HubUnavailable as err:
        if running_in_ci():
            pytest.fail(f"CI must run the Hub tests: {err}")
        pytest.skip(str(err))
    try:
        for name in GRANTS:
            hub.login(name)
        for name in GRANTS:
            hub.start_server(name)
        yield hub
    finally:
        hub.stop()
        for name in GRANTS:  # only containers of this run's users (random names)
            for c in docker_client.containers.list(
                all=True, filters={"label": f"{labels.USER}={name}"}
            ):
                c.remove(force=True)


def environments(hub: Hub, name: str) -> dict[str, dict[str, Any]]:
    reply = hub.user_request(name, "GET", "/gpuenv/api/environments")
    assert reply.status_code == 200, reply.text
    return {env["name"]: env for env in reply.json()["environments"]}


def user_containers(client: docker.DockerClient, name: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{labels.USER}={name}"})


def test_hub_api_tokens_log_each_user_in(hub: Hub) -> None:
    for name in GRANTS:
        reply = hub.api("GET", "/user", token=hub.tokens[name])
        assert reply.status_code == 200, reply.text
        assert reply.json()["name"] == name
    # A user's token does not open another user's server.
    other = hub.http.get(
        f"{hub.url}/user/{BOB}/gpuenv/api/environments",
        headers={"Authorization": f"token {hub.tokens[ALICE]}"},
        timeout=60,
        allow_redirects=False,
    )
    assert other.status_code in (302, 403), other.status_code


def test_each_user_lists_only_the_allowed_environments(hub: Hub, labelled_image: str) -> None:
    for name in GRANTS:
        envs = environments(hub, name)
        assert envs["python"]["kind"] == "docker", envs
        assert envs["python"]["problems"] == [], envs["python"]
        assert envs["demo"]["kind"] == "venv" and envs["demo"]["ipykernel"] is True
        assert not [e for e in envs.values() if e["location"].get("image") == labelled_image]
        names = hub.user_request(name, "GET", "/api/kernelspecs").json()["kernelspecs"]
        assert envs["python"]["kernel_name"] in names
        assert envs["demo"]["kernel_name"] in names


def write_kernelspec(home: Path, name: str, config: dict[str, Any]) -> None:
    folder = home / ".local" / "share" / "jupyter" / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"{name} (user-written)",
        "language": "python",
        "metadata": {
            "kernel_provisioner": {
                "provisioner_name": "gpuenv-docker-provisioner",
                "config": config,
            }
        },
    }
    (folder / "kernel.json").write_text(json.dumps(spec))


@pytest.mark.parametrize(
    ("spec_name", "extra", "named"),
    [
        ("sneaky-image", {"image": FORBIDDEN_IMAGE}, [FORBIDDEN_IMAGE, "allowed images"]),
        ("sneaky-mount", {"mounts": ["/:/host"]}, ["extra mounts", "/:/host"]),
        ("sneaky-gpu", {"gpus": [1]}, ["GPUs 1 beyond the grant GPUENV_GPUS=0"]),
    ],
)
def test_user_kernelspec_asking_for_more_is_refused(
    hub: Hub, docker_client: docker.DockerClient, spec_name: str, extra: dict, named: list[str]
) -> None:
    env_id = environments(hub, ALICE)["python"]["id"]
    write_kernelspec(hub.home(ALICE), spec_name, {"environment_id": env_id, **extra})
    specs = hub.user_request(ALICE, "GET", "/api/kernelspecs").json()["kernelspecs"]
    assert spec_name in specs  # the server does see the user's kernelspec

    reply = hub.user_request(ALICE, "POST", "/api/kernels", json={"name": spec_name})
    assert reply.status_code == 403, reply.text
    message = reply.json()["message"]
    assert f"Kernelspec '{spec_name}'" in message
    for part in named:
        assert part in message, message
    assert user_containers(docker_client, ALICE) == []


def test_gpu_status_shows_each_user_only_their_grant(hub: Hub) -> None:
    for name, index in ((BOB, 1), (ALICE, 0)):
        reply = hub.user_request(name, "GET", "/gpuenv/api/gpus")
        assert reply.status_code == 200, reply.text
        status = reply.json()
        assert status["available"] is True, status
        assert [(g["index"], g["uuid"]) for g in status["gpus"]] == [(index, FAKE_GPU_UUIDS[index])]
        gpu = status["gpus"][0]
        # PID 1 on that GPU is not this user's kernel: counted, not shown.
        assert gpu["processes"] == [] and gpu["hidden_processes"] == 1


def test_local_kernel_gets_only_the_users_gpus(hub: Hub) -> None:
    venv = environments(hub, ALICE)["demo"]
    reply = hub.user_request(ALICE, "POST", "/api/kernels", json={"name": venv["kernel_name"]})
    assert reply.status_code == 201, reply.text
    kernel_id = reply.json()["id"]
    try:
        out = execute(
            hub,
            ALICE,
            kernel_id,
            "import os, sys\n"
            "print(os.environ.get('CUDA_VISIBLE_DEVICES'), sys.prefix)\n"
            "print(os.environ.get('JUPYTER_GPUENV_ENVIRONMENT_ID'))",
        )
        visible, prefix, env_id = out.split()
        assert visible == GRANTS[ALICE]
        assert prefix == venv["location"]["prefix"]
        assert env_id == venv["id"]
    finally:
        hub.user_request(ALICE, "DELETE", f"/api/kernels/{kernel_id}")


def test_stopping_a_server_removes_its_kernel_containers(
    hub: Hub, docker_client: docker.DockerClient
) -> None:
    env = environments(hub, BOB)["python"]
    reply = hub.user_request(BOB, "POST", "/api/kernels", json={"name": env["kernel_name"]})
    assert reply.status_code == 201, reply.text
    kernel_id = reply.json()["id"]

    (container,) = user_containers(docker_client, BOB)
    assert container.labels[labels.USER] == BOB
    assert container.labels[labels.KERNEL_ID] == kernel_id
    assert container.labels[labels.ENVIRONMENT_ID] == env["id"]
    variables = dict(v.split("=", 1) for v in container.attrs["Config"]["Env"])
    assert variables["NVIDIA_VISIBLE_DEVICES"] == "void"  # gpus "none" for this image
    assert "JUPYTERHUB_API_TOKEN" not in variables
    assert execute(hub, BOB, kernel_id, "print(6 * 7)").strip() == "42"

    hub.stop_server(BOB)
    wait_for(
        f"{BOB}'s kernel containers removed",
        lambda: user_containers(docker_client, BOB) == [],
        timeout=60,
    )
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container.id)
