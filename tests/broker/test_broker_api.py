"""The broker's REST API called directly, as a user with a terminal could.

Identity is the Hub's answer for the token, never a name in the request; a token the Hub
does not know is a 401, one without the broker's scope a 403; another user's kernel does
not exist for the caller; malformed requests get JSON errors.
"""

from __future__ import annotations

import http.client
import json
import secrets
import urllib.parse

import docker
import pytest
from jupyter_client.blocking import BlockingKernelClient

from jupyter_gpuenv.docker import labels
from tests.broker.conftest import ALICE, BOB
from tests.broker.hub_broker import BrokerHub
from tests.broker.user_calls import (
    broker_environments,
    containers_of_kernel,
    refusal,
    start_kernel_body,
    user_containers,
)

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(1200)]


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


def test_a_large_body_is_refused_before_its_sender_is_known(broker_hub: BrokerHub) -> None:
    """Only the headers are sent: the broker answers 413 in JSON without waiting for a
    body or asking the Hub about a token (there is none), and holds nothing of it."""
    url = urllib.parse.urlsplit(broker_hub.broker_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.putrequest("POST", f"{url.path}api/kernels")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(64 * 1024 * 1024))
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 413, body
    assert "larger than" in body["message"], body


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
