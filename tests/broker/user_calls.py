"""What the tests do as a Hub user: REST calls to their single-user server and to the broker.

Every call carries the user's own Hub token; answers are checked for status here so the
tests read as the user's steps. Refusals are JSON with a message (``refusal``).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import docker
import requests

from jupyter_gpuenv.docker import labels
from tests.broker.hub_broker import BrokerHub
from tests.hub.hub_runner import wait_for


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


def user_containers(client: docker.DockerClient, name: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{labels.USER}={name}"})


def gone(client: docker.DockerClient, kernel_id: str, timeout: float = 120) -> None:
    wait_for(
        f"kernel {kernel_id}'s container removed",
        lambda: not containers_of_kernel(client, kernel_id),
        timeout,
    )


def start_kernel_body(environment_id: str, cwd: str | None, **extra: Any) -> dict[str, Any]:
    """A broker POST api/kernels body as a single-user server would send it."""
    body: dict[str, Any] = {
        "kernel_id": str(uuid.uuid4()),
        "environment_id": environment_id,
        "key": secrets.token_hex(32),
        "signature_scheme": "hmac-sha256",
        "cwd": cwd,
        "config": {},
        "session_name": "",
        "env": {},
        "transport_encryption": None,
    }
    body.update(extra)
    return body
