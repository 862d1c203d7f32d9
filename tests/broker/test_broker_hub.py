"""Kernels on a real JupyterHub through the gpuenv broker, for real system users.

Each user starts container kernels the way JupyterLab does (their single-user server's
REST API and kernel websocket, with their own Hub token); the kernels run as their own
uid in their own folder. What a user controls (kernelspecs in their home, request bodies
and headers sent to the broker, their Hub token) never gets them another image, a host
mount, privileges, another user's folder or kernel, more than their quota, or Docker.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from typing import Any

import docker
import pytest
import requests
from jupyter_client.blocking import BlockingKernelClient

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.provisioning.container_spec import CONNECTION_FILE_IN_CONTAINER
from tests.broker.conftest import ALICE, BOB, GROUP, GROUP_DATA, user_containers
from tests.broker.hub_broker import DOCKER_SOCKET, BrokerHub, groups_of, start_kernel_body
from tests.hub.hub_runner import execute, wait_for

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(1200)]

FORBIDDEN_IMAGE = "someone/else:latest"


# -- helpers ----------------------------------------------------------------------------


def broker_environments(hub: BrokerHub, name: str) -> dict[str, dict[str, Any]]:
    """The environments the broker offers ``name`` (asked with their own Hub token)."""
    reply = hub.broker("GET", "api/environments", hub.tokens[name])
    assert reply.status_code == 200, reply.text
    return {env["name"]: env for env in reply.json()["environments"]}


def kernelspecs(hub: BrokerHub, name: str) -> dict[str, Any]:
    reply = hub.user_request(name, "GET", "/api/kernelspecs")
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["kernelspecs"])


def kernel_name(hub: BrokerHub, name: str, environment: str) -> str:
    """The kernelspec ``name``'s server shows for a broker environment."""
    env_id = broker_environments(hub, name)[environment]["id"]
    for spec_name, spec in kernelspecs(hub, name).items():
        gpuenv = (spec.get("spec") or {}).get("metadata", {}).get("gpuenv") or {}
        if gpuenv.get("environment_id") == env_id:
            return spec_name
    raise AssertionError(f"{name}'s server lists no kernelspec for {environment} ({env_id})")


def start(hub: BrokerHub, name: str, spec_name: str, **body: Any) -> requests.Response:
    return hub.user_request(name, "POST", "/api/kernels", json={"name": spec_name, **body})


def started(hub: BrokerHub, name: str, spec_name: str, **body: Any) -> str:
    reply = start(hub, name, spec_name, **body)
    assert reply.status_code == 201, f"{reply.status_code} {reply.text}\n{hub.log_tail()}"
    return str(reply.json()["id"])


def shut_down(hub: BrokerHub, name: str, kernel_id: str) -> None:
    reply = hub.user_request(name, "DELETE", f"/api/kernels/{kernel_id}")
    assert reply.status_code == 204, reply.text


def server_kernel_ids(hub: BrokerHub, name: str) -> list[str]:
    reply = hub.user_request(name, "GET", "/api/kernels")
    assert reply.status_code == 200, reply.text
    return [k["id"] for k in reply.json()]


def refusal(reply: requests.Response, *statuses: int) -> str:
    """The JSON message of a refusal with one of ``statuses``."""
    assert reply.status_code in statuses, f"{reply.status_code}: {reply.text}"
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers
    message = reply.json().get("message")
    assert isinstance(message, str) and message, reply.text
    return message


def containers_of_kernel(client: docker.DockerClient, kernel_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{labels.KERNEL_ID}={kernel_id}"})


def gone(client: docker.DockerClient, kernel_id: str, timeout: float = 120) -> None:
    wait_for(
        f"kernel {kernel_id}'s container removed",
        lambda: not containers_of_kernel(client, kernel_id),
        timeout,
    )


@pytest.fixture
def no_leftovers(broker_hub: BrokerHub, docker_client: docker.DockerClient) -> Any:
    """After the test: none of the users has a kernel left (each test shuts its own down)."""
    yield
    for name in (ALICE, BOB):
        for kernel_id in server_kernel_ids(broker_hub, name):
            shut_down(broker_hub, name, kernel_id)
        wait_for(
            f"{name}'s containers removed", lambda n=name: not user_containers(docker_client, n), 60
        )


# -- the accounts never reach Docker ----------------------------------------------------


@pytest.mark.parametrize("name", [ALICE, BOB])
def test_users_cannot_use_the_docker_socket(broker_hub: BrokerHub, name: str) -> None:
    assert DOCKER_SOCKET.exists()
    assert "docker" not in groups_of(name)
    connect = broker_hub.run_as(
        name,
        [
            "/usr/bin/python3",
            "-c",
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            f"s.connect({str(DOCKER_SOCKET)!r})\n",
        ],
    )
    assert connect.returncode != 0
    assert "PermissionError: [Errno 13] Permission denied" in connect.stderr, connect.stderr
    cli = broker_hub.run_as(name, ["docker", "ps"])
    assert cli.returncode != 0
    assert "permission denied" in cli.stderr, cli.stderr


def test_each_users_server_runs_as_that_user(broker_hub: BrokerHub) -> None:
    for name, account in broker_hub.accounts.items():
        pid = broker_hub.server_pid(name)
        assert pid is not None, f"no jupyterhub.singleuser process of uid {account.uid}"
        status = open(f"/proc/{pid}/status").read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(account.uid)] * 4, uid_line
        groups_line = next(line for line in status.splitlines() if line.startswith("Groups:"))
        docker_gid = DOCKER_SOCKET.stat().st_gid
        assert str(docker_gid) not in groups_line.split()[1:], groups_line


# -- identity and the catalog come from the Hub and the admin ---------------------------


def test_whoami_is_the_hub_user_whatever_the_request_says(broker_hub: BrokerHub) -> None:
    forged = {"X-Forwarded-User": BOB, "X-Remote-User": BOB, "KERNEL_USERNAME": BOB}
    reply = broker_hub.broker(
        "GET", f"api/whoami?user={BOB}", broker_hub.tokens[ALICE], headers=forged
    )
    assert reply.status_code == 200, reply.text
    me = reply.json()
    alice = broker_hub.accounts[ALICE]
    assert (me["name"], me["uid"], me["gid"]) == (ALICE, alice.uid, alice.gid), me
    assert me["groups"] == [GROUP]
    assert me["policy"]["max_kernels"] == 3 and me["policy"]["max_gpus"] == 1, me
    assert sorted(me["policy"]["environments"]) == ["gpu", "python", "vision"], me

    reply = broker_hub.broker("GET", "api/whoami", broker_hub.tokens[BOB])
    bob = reply.json()
    assert (bob["name"], bob["groups"]) == (BOB, []), bob
    assert bob["policy"]["max_kernels"] == 2 and bob["policy"]["max_gpus"] == 0, bob
    assert bob["policy"]["environments"] == ["python"], bob


def test_each_user_sees_only_the_environments_allowed_to_them(broker_hub: BrokerHub) -> None:
    alice, bob = broker_environments(broker_hub, ALICE), broker_environments(broker_hub, BOB)
    assert sorted(alice) == ["gpu", "python", "vision"], alice
    assert sorted(bob) == ["python"], bob
    # The servers show the same: Alice's has a kernelspec for vision, Bob's has none.
    kernel_name(broker_hub, ALICE, "vision")
    vision_id = alice["vision"]["id"]
    for spec in kernelspecs(broker_hub, BOB).values():
        gpuenv = spec["spec"].get("metadata", {}).get("gpuenv") or {}
        assert gpuenv.get("environment_id") != vision_id, spec


# -- kernels work for each user, as that user -------------------------------------------


@pytest.mark.parametrize("name", [ALICE, BOB])
def test_kernel_runs_as_the_user_in_their_home(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, name: str, no_leftovers: Any
) -> None:
    account = broker_hub.accounts[name]
    kernel_id = started(broker_hub, name, kernel_name(broker_hub, name, "python"))
    marker = f"written-by-kernel-{secrets.token_hex(4)}.txt"
    out = execute(
        broker_hub,
        name,
        kernel_id,
        "import os\n"
        "print(os.getuid(), os.getgid(), os.getcwd())\n"
        f"open({marker!r}, 'w').write('hello')\n"
        f"print(os.path.exists({str(DOCKER_SOCKET)!r}))\n",
    )
    assert out.split() == [str(account.uid), str(account.gid), str(account.home), "False"], out
    written = account.home / marker
    assert written.read_text() == "hello"
    assert (written.stat().st_uid, written.stat().st_gid) == (account.uid, account.gid)

    (container,) = containers_of_kernel(docker_client, kernel_id)
    assert container.labels[labels.USER] == name
    assert container.attrs["Config"]["User"] == f"{account.uid}:{account.gid}"
    host = container.attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["Memory"] == 1024**3  # the default rule's mem_limit
    assert not any(m["Source"] == str(DOCKER_SOCKET) for m in container.attrs["Mounts"])

    shut_down(broker_hub, name, kernel_id)
    gone(docker_client, kernel_id)


def test_the_server_shows_the_panel_rest_and_gpuinfo_as_in_single_user_mode(
    broker_hub: BrokerHub, no_leftovers: Any
) -> None:
    envs = broker_hub.user_request(ALICE, "GET", "/gpuenv/api/environments")
    assert envs.status_code == 200, envs.text
    listed = {e["name"]: e for e in envs.json()["environments"]}
    assert sorted(listed) == ["gpu", "python", "vision"], listed
    assert listed["python"]["kind"] == "docker" and listed["python"]["problems"] == []
    for name in (ALICE, BOB):
        gpus = broker_hub.user_request(name, "GET", "/gpuenv/api/gpus")
        assert gpus.status_code == 200, gpus.text
        assert gpus.json()["available"] is False, gpus.text  # no GPU on this host
        direct = broker_hub.broker("GET", "api/gpus", broker_hub.tokens[name])
        assert direct.status_code == 200 and direct.json()["available"] is False, direct.text
    kernel_id = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "python"))
    out = execute(
        broker_hub, ALICE, kernel_id, "info = %gpuinfo --json\nimport json; print(json.dumps(info))"
    )
    info = json.loads(out)
    assert info["available"] is False and info["devices"] == [], info
    assert info["pid"] > 0, info
    shut_down(broker_hub, ALICE, kernel_id)


def test_a_kernels_connection_file_is_not_readable_by_another_user(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    """Its key lets anyone run code in the kernel (its ports are on the host's 127.0.0.1)."""
    kernel_id = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "python"))
    (container,) = containers_of_kernel(docker_client, kernel_id)
    (source,) = [
        m["Source"]
        for m in container.attrs["Mounts"]
        if m["Destination"] == CONNECTION_FILE_IN_CONTAINER
    ]
    theirs = broker_hub.run_as(BOB, ["cat", source])
    assert theirs.returncode != 0 and "Permission denied" in theirs.stderr, theirs
    assert theirs.stdout == ""
    shut_down(broker_hub, ALICE, kernel_id)


def test_group_mount_is_there_read_only_for_the_group_only(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    kernel_id = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "vision"))
    out = execute(
        broker_hub,
        ALICE,
        kernel_id,
        f"print(open('/data/{GROUP}/{GROUP_DATA}').read().strip())\n"
        "try:\n"
        f"    open('/data/{GROUP}/mine.txt', 'w')\n"
        "except OSError as err:\n"
        "    print(type(err).__name__, err.errno)\n",
    )
    assert out.splitlines() == [f"data of the {GROUP} group", "OSError 30"], out  # EROFS
    shut_down(broker_hub, ALICE, kernel_id)

    # Bob is not in the group: asking the broker for that environment is refused.
    vision_id = broker_environments(broker_hub, ALICE)["vision"]["id"]
    reply = broker_hub.broker(
        "POST",
        "api/kernels",
        broker_hub.tokens[BOB],
        json=start_kernel_body(vision_id, str(broker_hub.home(BOB))),
    )
    message = refusal(reply, 403)
    assert "not among the environments you may use (python)" in message, message
    assert user_containers(docker_client, BOB) == []


# -- what a user can write does not widen the policy ------------------------------------


UNSUPPORTED = "settings this provisioner does not support ("
REFUSALS = [
    (ALICE, "sneaky-image", {"image": FORBIDDEN_IMAGE}, [f"image {FORBIDDEN_IMAGE!r}"]),
    (
        BOB,
        "sneaky-group-image",
        {"image": "VISION"},
        ["image {VISION!r} (allowed images: {PYTHON})"],
    ),
    (ALICE, "sneaky-mount", {"mounts": ["/:/host"]}, ["extra mounts (mounts=['/:/host'])"]),
    (ALICE, "sneaky-volume", {"volumes": {"/": {"bind": "/host"}}}, [UNSUPPORTED + "volumes;"]),
    (ALICE, "sneaky-privileged", {"privileged": True}, [UNSUPPORTED + "privileged;"]),
    (ALICE, "sneaky-root", {"user": "0:0"}, ["user '0:0' is uid 0"]),
    (BOB, "sneaky-other-uid", {"user": "ALICE_UID"}, ["a different user (user="]),
    (BOB, "sneaky-docker-group", {"group_add": ["DOCKER_GID"]}, [UNSUPPORTED + "group_add;"]),
    (ALICE, "sneaky-caps", {"cap_add": ["SYS_ADMIN"]}, [UNSUPPORTED + "cap_add;"]),
    (ALICE, "sneaky-pid", {"pid_mode": "host"}, [UNSUPPORTED + "pid_mode;"]),
    (ALICE, "sneaky-userns", {"userns_mode": "host"}, [UNSUPPORTED + "userns_mode;"]),
    (ALICE, "sneaky-devices", {"devices": ["/dev/mem:/dev/mem"]}, [UNSUPPORTED + "devices;"]),
    (ALICE, "sneaky-memory", {"mem_limit": "100g"}, ["a different memory limit (mem_limit="]),
    (BOB, "sneaky-gpu", {"gpus": 1}, ["1 GPUs beyond the allowed GPUs (none)"]),
    (
        ALICE,
        "sneaky-gpus",
        {"gpus": 2, "environment": "gpu"},
        ["Quota: this kernel asks for 2 GPU(s)", "you may use 1 at once"],
    ),
]


def resolved(broker_hub: BrokerHub, images: dict[str, str], case: Any) -> Any:
    """A refusal case's settings with the run's images, uid and docker group."""
    placeholders = {
        **images,
        "ALICE_UID": str(broker_hub.accounts[ALICE].uid),
        "DOCKER_GID": str(DOCKER_SOCKET.stat().st_gid),
    }
    text = json.dumps(case)
    for name, value in placeholders.items():
        text = text.replace(f'"{name}"', json.dumps(value))
    return json.loads(text)


@pytest.mark.parametrize(("name", "spec_name", "extra", "named"), REFUSALS)
@pytest.mark.parametrize("via", ["kernelspec", "broker"])
def test_asking_for_more_than_the_policy_is_refused(
    broker_hub: BrokerHub,
    docker_client: docker.DockerClient,
    python_kernel_image: str,
    vision_image: str,
    via: str,
    name: str,
    spec_name: str,
    extra: dict[str, Any],
    named: list[str],
) -> None:
    """A kernelspec the user wrote, started through their server; or the same settings
    sent to the broker straight away (the server's checks bypassed)."""
    images = {"PYTHON": python_kernel_image, "VISION": vision_image}
    settings = dict(resolved(broker_hub, images, extra))
    named = [part.format(**images) for part in named]
    env_id = broker_environments(broker_hub, name)[settings.pop("environment", "python")]["id"]
    if via == "kernelspec":
        broker_hub.write_kernelspec_as(name, spec_name, {"environment_id": env_id, **settings})
        assert spec_name in kernelspecs(broker_hub, name)  # the server does see it
        reply = start(broker_hub, name, spec_name)
    else:
        body = start_kernel_body(env_id, str(broker_hub.home(name)), config=settings)
        reply = broker_hub.broker("POST", "api/kernels", broker_hub.tokens[name], json=body)
    message = refusal(reply, 403)
    assert "asks for more than the administrator allows" in message or "Quota" in message
    for part in named:
        assert part in message, message
    assert user_containers(docker_client, name) == []
    assert server_kernel_ids(broker_hub, name) == []


def test_user_kernelspec_naming_an_environment_of_another_group_is_refused(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    vision_id = broker_environments(broker_hub, ALICE)["vision"]["id"]
    broker_hub.write_kernelspec_as(BOB, "sneaky-group", {"environment_id": vision_id})
    message = refusal(start(broker_hub, BOB, "sneaky-group"), 403)
    assert "not among the environments you may use (python)" in message, message
    assert user_containers(docker_client, BOB) == []


def test_notebook_folder_of_another_user_is_refused(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    bob_home = str(broker_hub.home(BOB))
    env_id = broker_environments(broker_hub, ALICE)["python"]["id"]
    # Straight to the broker, with Bob's home as the notebook folder.
    reply = broker_hub.broker(
        "POST", "api/kernels", broker_hub.tokens[ALICE], json=start_kernel_body(env_id, bob_home)
    )
    message = refusal(reply, 403)
    assert f"The notebook folder {bob_home}" in message, message
    assert "outside the folders your kernels may use" in message, message
    # Through her server: a path leading out of her home, and a link in her home to his.
    spec_name = kernel_name(broker_hub, ALICE, "python")
    done = broker_hub.run_as(ALICE, ["ln", "-s", bob_home, "bobs-home"])
    assert done.returncode == 0, done.stderr
    for path in (f"../{BOB}", "bobs-home"):
        message = refusal(start(broker_hub, ALICE, spec_name, path=path), 403)
        assert f"(resolved: {bob_home})" in message, message
    assert user_containers(docker_client, ALICE) == []
    assert server_kernel_ids(broker_hub, ALICE) == []


def test_quota_counts_kernels_at_once(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    spec_name = kernel_name(broker_hub, BOB, "python")
    first, second = started(broker_hub, BOB, spec_name), started(broker_hub, BOB, spec_name)
    message = refusal(start(broker_hub, BOB, spec_name), 403)
    assert "Quota: you already run 2 kernel(s) and may run 2 at once" in message, message
    # Asking the broker directly instead of the server gets no further.
    env_id = broker_environments(broker_hub, BOB)["python"]["id"]
    reply = broker_hub.broker(
        "POST",
        "api/kernels",
        broker_hub.tokens[BOB],
        json=start_kernel_body(env_id, str(broker_hub.home(BOB))),
    )
    assert "Quota: you already run 2 kernel(s)" in refusal(reply, 403)
    assert len(user_containers(docker_client, BOB)) == 2
    # One shut down: room for one more.
    shut_down(broker_hub, BOB, first)
    gone(docker_client, first)
    third = started(broker_hub, BOB, spec_name)
    assert sorted(server_kernel_ids(broker_hub, BOB)) == sorted([second, third])


# -- calling the broker directly --------------------------------------------------------


def test_broker_without_a_valid_token_is_401(broker_hub: BrokerHub) -> None:
    for token in (None, "not-a-token", secrets.token_hex(32)):
        for method, path in (
            ("GET", "api/whoami"),
            ("GET", "api/kernels"),
            ("POST", "api/kernels"),
        ):
            reply = broker_hub.broker(method, path, token, json={})
            message = refusal(reply, 401)
            assert "token" in message, message
    # The same through the Hub's proxy, where the service is routed too.
    reply = broker_hub.http.get(f"{broker_hub.url}/services/gpuenv-broker/api/kernels", timeout=60)
    assert "token" in refusal(reply, 401)


def test_bad_requests_get_json_errors(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    token = broker_hub.tokens[ALICE]
    env_id = broker_environments(broker_hub, ALICE)["python"]["id"]
    home = str(broker_hub.home(ALICE))
    cases = [
        ("GET", "api/nothing-here", None, None, 404, "No broker API at"),
        ("GET", "api/kernels/..%2F..%2Fapi%2Fwhoami", None, None, 404, "You have no kernel"),
        ("POST", "api/kernels", None, b"not json", 400, "not JSON"),
        ("POST", "api/kernels", None, b"[1, 2]", 400, "must be a JSON object"),
        (
            "POST",
            "api/kernels",
            start_kernel_body(env_id, home, kernel_id="../../etc"),
            None,
            400,
            "kernel_id must be a kernel's UUID",
        ),
        (
            "POST",
            "api/kernels",
            start_kernel_body(env_id, home, key="short"),
            None,
            400,
            "key must be the kernel's HMAC key",
        ),
        (
            "POST",
            "api/kernels",
            start_kernel_body(env_id, "relative/folder"),
            None,
            403,
            "must be an absolute path",
        ),
        ("POST", "api/kernels", None, b"{" + b" " * (200 * 1024) + b"}", 413, "larger than"),
    ]
    for method, path, body, raw, status, text in cases:
        reply = broker_hub.broker(method, path, token, json=body, data=raw)
        message = refusal(reply, status)
        assert text in message, (path, message)
    assert user_containers(docker_client, ALICE) == []


def test_token_without_the_broker_scope_is_403(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    token = broker_hub.token_with_scopes(ALICE, ["read:users:name!user"])
    assert broker_hub.api("GET", "/user", token=token).json()["name"] == ALICE
    env_id = broker_environments(broker_hub, ALICE)["python"]["id"]
    for method, path, body in (
        ("GET", "api/environments", None),
        ("POST", "api/kernels", start_kernel_body(env_id, str(broker_hub.home(ALICE)))),
    ):
        message = refusal(broker_hub.broker(method, path, token, json=body), 403)
        assert "access:services!service=gpuenv-broker" in message, message
    assert user_containers(docker_client, ALICE) == []


def test_hub_user_without_a_system_account_gets_no_kernel(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    ghost = f"brkghost{secrets.token_hex(3)}"
    reply = broker_hub.api("POST", f"/users/{ghost}")
    assert reply.status_code == 201, reply.text
    try:
        token = broker_hub.login(ghost)
        env_id = broker_environments(broker_hub, ALICE)["python"]["id"]
        for method, path, body in (
            ("GET", "api/whoami", None),
            ("POST", "api/kernels", start_kernel_body(env_id, f"/home/{ghost}")),
        ):
            message = refusal(broker_hub.broker(method, path, token, json=body), 403)
            assert f"Hub user {ghost!r} has no system account" in message, message
        assert user_containers(docker_client, ghost) == []
    finally:
        broker_hub.api("DELETE", f"/users/{ghost}")


def test_forged_user_names_are_not_who_the_kernel_is_for(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    alice = broker_hub.accounts[ALICE]
    env_id = broker_environments(broker_hub, ALICE)["python"]["id"]
    token = broker_hub.tokens[ALICE]
    # A user field in the body is no part of the API.
    body = start_kernel_body(env_id, str(alice.home), user=BOB, username=BOB)
    message = refusal(broker_hub.broker("POST", "api/kernels", token, json=body), 400)
    assert "Unknown fields user, username" in message, message
    assert user_containers(docker_client, BOB) == []
    # Names in headers and in the kernel's environment change nothing.
    forged = {"X-Forwarded-User": BOB, "X-Remote-User": BOB, "JupyterHub-User": BOB}
    body = start_kernel_body(
        env_id, str(alice.home), env={"JUPYTERHUB_USER": BOB, "KERNEL_USERNAME": BOB}
    )
    reply = broker_hub.broker("POST", "api/kernels", token, json=body, headers=forged)
    assert reply.status_code == 201, reply.text
    kernel_id = body["kernel_id"]
    try:
        assert reply.json()["kernel"]["user"] == ALICE
        (container,) = containers_of_kernel(docker_client, kernel_id)
        assert container.labels[labels.USER] == ALICE
        assert container.attrs["Config"]["User"] == f"{alice.uid}:{alice.gid}"
        # The connection the broker returned is a working kernel, as Alice.
        client = BlockingKernelClient()
        client.load_connection_info({**reply.json()["connection"], "key": body["key"]})
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            outputs: list[str] = []
            client.execute_interactive(
                "import os; print(os.getuid(), os.getcwd())",
                timeout=60,
                output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
            )
        finally:
            client.stop_channels()
        assert "".join(outputs).split() == [str(alice.uid), str(alice.home)], outputs
        assert user_containers(docker_client, BOB) == []
        assert broker_hub.broker("GET", "api/kernels", broker_hub.tokens[BOB]).json() == {
            "kernels": []
        }
    finally:
        reply = broker_hub.broker("DELETE", f"api/kernels/{kernel_id}", token)
        assert reply.status_code == 204, reply.text
    assert containers_of_kernel(docker_client, kernel_id) == []


def test_another_users_kernel_is_not_found(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    env_id = broker_environments(broker_hub, ALICE)["python"]["id"]
    body = start_kernel_body(env_id, str(broker_hub.home(ALICE)))
    kernel_id = body["kernel_id"]
    reply = broker_hub.broker("POST", "api/kernels", broker_hub.tokens[ALICE], json=body)
    assert reply.status_code == 201, reply.text
    bob = broker_hub.tokens[BOB]
    try:
        for method, path, payload in (
            ("GET", f"api/kernels/{kernel_id}", None),
            ("GET", f"api/kernels/{kernel_id}/logs", None),
            ("POST", f"api/kernels/{kernel_id}/signal", {"signal": "SIGKILL"}),
            ("DELETE", f"api/kernels/{kernel_id}", None),
        ):
            message = refusal(broker_hub.broker(method, path, bob, json=payload), 404)
            assert f"You have no kernel {kernel_id!r} here." == message, message
        assert broker_hub.broker("GET", "api/kernels", bob).json() == {"kernels": []}
        # Bob starting a kernel of Alice's id gets no hold of hers.
        taken = start_kernel_body(
            broker_environments(broker_hub, BOB)["python"]["id"],
            str(broker_hub.home(BOB)),
            kernel_id=kernel_id,
        )
        message = refusal(broker_hub.broker("POST", "api/kernels", bob, json=taken), 403, 409)
        assert kernel_id in message, message
        (container,) = containers_of_kernel(docker_client, kernel_id)
        container.reload()
        assert container.status == "running" and container.labels[labels.USER] == ALICE
        mine = broker_hub.broker("GET", f"api/kernels/{kernel_id}", broker_hub.tokens[ALICE])
        assert mine.json()["running"] is True and mine.json()["user"] == ALICE, mine.text
    finally:
        reply = broker_hub.broker("DELETE", f"api/kernels/{kernel_id}", broker_hub.tokens[ALICE])
        assert reply.status_code == 204, reply.text
    assert containers_of_kernel(docker_client, kernel_id) == []


# -- the broker's restart, and servers that stop ----------------------------------------


def test_broker_restart_reattaches_running_kernels(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    kernel_id = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "python"))
    execute(broker_hub, ALICE, kernel_id, "answer = 41")
    before = broker_hub.broker_pid()
    assert before is not None
    os.kill(before, signal.SIGKILL)
    wait_for("the killed broker gone", lambda: broker_hub.broker_pid() != before, 30)
    # The Hub restarts its managed service (it polls it, so within about 30 s).
    after = broker_hub.wait_for_broker(timeout=180)
    assert after != before
    # The kernel kept running; the server and the broker both still know it.
    assert execute(broker_hub, ALICE, kernel_id, "print(answer + 1)").strip() == "42"
    assert kernel_id in server_kernel_ids(broker_hub, ALICE)
    listed = broker_hub.broker("GET", "api/kernels", broker_hub.tokens[ALICE]).json()["kernels"]
    assert [(k["kernel_id"], k["running"]) for k in listed] == [(kernel_id, True)], listed
    shut_down(broker_hub, ALICE, kernel_id)
    gone(docker_client, kernel_id)


@pytest.mark.parametrize("how", ["stopped through the Hub", "killed"])
def test_a_users_stopped_server_takes_their_kernels_along(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, how: str
) -> None:
    kernel_id = started(broker_hub, BOB, kernel_name(broker_hub, BOB, "python"))
    other = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "python"))
    try:
        if how == "killed":
            pid = broker_hub.server_pid(BOB)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # no shutdown of its kernels: the broker notices
            wait_for(
                "the Hub noticing Bob's server died", lambda: not broker_hub.server_model(BOB), 120
            )
        else:
            broker_hub.stop_server(BOB)
        gone(docker_client, kernel_id, timeout=120)
        assert user_containers(docker_client, BOB) == []
        # Alice's kernel is not Bob's server's business.
        (container,) = containers_of_kernel(docker_client, other)
        assert container.status == "running"
    finally:
        shut_down(broker_hub, ALICE, other)
        broker_hub.start_server(BOB)
