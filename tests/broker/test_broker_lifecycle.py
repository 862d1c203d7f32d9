"""Kernels outlive a broker restart; a user's server that stops takes their kernels along,
and so does its culler an idle kernel."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import docker
import pytest

from jupyter_gpuenv.docker import labels
from tests.broker.conftest import ALICE, BOB, CAROL, HUB_CACHE_SECONDS
from tests.broker.hub_broker import BrokerHub
from tests.broker.user_calls import (
    broker_environments,
    containers_of_kernel,
    gone,
    kernel_name,
    server_kernel_ids,
    shut_down,
    start_kernel_body,
    started,
    user_containers,
)
from tests.hub.hub_runner import execute, wait_for

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(1200)]


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


def test_the_servers_culler_removes_an_idle_brokered_kernel(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    broker_hub.start_server(CAROL)
    try:
        kernel_id = started(broker_hub, CAROL, kernel_name(broker_hub, CAROL, "python"))
        (container,) = containers_of_kernel(docker_client, kernel_id)
        assert container.labels[labels.USER] == CAROL
        wait_for(
            "the idle kernel culled by Carol's server",
            lambda: kernel_id not in server_kernel_ids(broker_hub, CAROL),
            120,
        )
        gone(docker_client, kernel_id, timeout=60)
        assert broker_hub.broker("GET", "api/kernels", broker_hub.tokens[CAROL]).json() == {
            "kernels": []
        }
    finally:
        broker_hub.stop_server(CAROL)
    assert user_containers(docker_client, CAROL) == []


def test_a_kernel_of_a_user_without_a_server_does_not_stay(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    """Carol's server is not running; her own token still reaches the broker, which
    refuses the start: kernels are started by one's server."""
    assert broker_hub.server_model(CAROL) is None
    # A server seen running is taken at the Hub's word for hub_cache_seconds (an earlier
    # test stopped hers just now): past that window the broker asks again.
    time.sleep(HUB_CACHE_SECONDS)
    env_id = broker_environments(broker_hub, CAROL)["python"]["id"]
    body = start_kernel_body(env_id, str(broker_hub.home(CAROL)))
    reply = broker_hub.broker("POST", "api/kernels", broker_hub.tokens[CAROL], json=body)
    assert reply.status_code == 409, reply.text
    assert "has no running server" in reply.json()["message"]
    assert not user_containers(docker_client, CAROL)
    listed = broker_hub.broker("GET", "api/kernels", broker_hub.tokens[CAROL])
    assert listed.json() == {"kernels": []}, listed.text
