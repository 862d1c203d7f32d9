"""The broker asks the Hub about a user at most once per ``hub_cache_seconds``, and a
user the Hub no longer knows loses access once that window has passed.

A second broker on the real test Hub (tests/broker/counted_broker.py) reaches the Hub's
API through a forwarder that writes down each request, so the lookups counted are the
ones the broker really sent. Alice's server runs (conftest.py); the callers use real Hub
tokens.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.broker.conftest import ALICE, CAROL, SUFFIX
from tests.broker.counted_broker import counted_broker
from tests.broker.hub_broker import BrokerHub

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]

WINDOW = 8.0  # wide: a loaded machine still makes its calls inside it
TOKEN_LOOKUP = ("GET", "/hub/api/user")


def user_lookup(name: str) -> tuple[str, str]:
    return ("GET", f"/hub/api/users/{name}")


def refused_start() -> dict[str, str]:
    """A start the broker refuses after its server check: no such environment."""
    return {
        "kernel_id": str(uuid.uuid4()),
        "environment_id": "docker:no-such-environment",
        "key": secrets.token_hex(16),
        "signature_scheme": "hmac-sha256",
    }


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def test_repeated_calls_of_one_user_ask_the_hub_once_per_window(broker_hub: BrokerHub) -> None:
    """Whoami, listings and starts, several times inside the window: one token check and
    one user lookup (groups and server state) in all; after the window, one of each more."""
    token = broker_hub.tokens[ALICE]
    with counted_broker(broker_hub, WINDOW) as broker:
        first = time.monotonic()
        assert broker.call("GET", "api/whoami", token).status_code == 200
        for _ in range(3):
            reply = broker.call("POST", "api/kernels", token, json=refused_start())
            assert reply.status_code == 403, reply.text  # asked after the server check
            assert "not one the administrator offers" in reply.json()["message"]
        assert broker.call("GET", "api/kernels", token).json() == {"kernels": []}
        assert broker.call("GET", "api/environments", token).status_code == 200
        assert time.monotonic() - first < WINDOW, "too slow to stay inside the window"
        assert broker.hub_requests() == [TOKEN_LOOKUP, user_lookup(ALICE)]

        wait_until(first + WINDOW + 0.5)
        reply = broker.call("POST", "api/kernels", token, json=refused_start())
        assert reply.status_code == 403, reply.text
        assert broker.hub_requests() == [TOKEN_LOOKUP, user_lookup(ALICE)] * 2


@pytest.fixture
def passing_user(broker_hub: BrokerHub) -> Iterator[tuple[str, str]]:
    """A Hub user with no system account and no server, and their token; removed from
    the Hub by the test (or at the end)."""
    name = f"brkgone{SUFFIX}{secrets.token_hex(2)}"
    reply = broker_hub.api("POST", f"/users/{name}")
    assert reply.status_code == 201, reply.text
    reply = broker_hub.api("POST", f"/users/{name}/tokens", json={"expires_in": 3600})
    assert reply.status_code in (200, 201), reply.text
    yield name, str(reply.json()["token"])
    broker_hub.api("DELETE", f"/users/{name}")


def test_a_user_removed_from_the_hub_loses_access_once_the_window_has_passed(
    broker_hub: BrokerHub, passing_user: tuple[str, str]
) -> None:
    name, token = passing_user
    with counted_broker(broker_hub, WINDOW) as broker:
        first = time.monotonic()
        assert broker.call("GET", "api/kernels", token).status_code == 200
        assert broker_hub.api("DELETE", f"/users/{name}").status_code == 204
        # Inside the window the Hub's earlier answer stands (docs/jupyterhub.md)...
        assert broker.call("GET", "api/kernels", token).status_code == 200
        assert time.monotonic() - first < WINDOW, "too slow to stay inside the window"
        wait_until(first + WINDOW + 0.5)
        # ...after it the Hub is asked again and knows no such token.
        reply = broker.call("GET", "api/kernels", token)
        assert reply.status_code == 401, reply.text
        assert broker.hub_requests() == [TOKEN_LOOKUP, user_lookup(name), TOKEN_LOOKUP]


def test_with_no_window_every_call_asks_the_hub(
    broker_hub: BrokerHub, passing_user: tuple[str, str]
) -> None:
    """``hub_cache_seconds = 0``: a removed user is refused at the next call."""
    name, token = passing_user
    with counted_broker(broker_hub, 0) as broker:
        assert broker.call("GET", "api/kernels", token).status_code == 200
        assert broker.call("GET", "api/kernels", token).status_code == 200
        assert broker_hub.api("DELETE", f"/users/{name}").status_code == 204
        reply = broker.call("GET", "api/kernels", token)
        assert reply.status_code == 401, reply.text
        assert broker.hub_requests() == [TOKEN_LOOKUP, user_lookup(name)] * 2 + [TOKEN_LOOKUP]


def test_a_server_started_inside_the_window_is_not_taken_for_stopped(
    broker_hub: BrokerHub,
) -> None:
    """Only "running" is taken from the cache: Carol asked while her server was stopped,
    then started it; her server's start of a kernel is not refused for want of one."""
    token = broker_hub.tokens[CAROL]
    with counted_broker(broker_hub, 600) as broker:
        assert broker.call("GET", "api/whoami", token).status_code == 200
        reply = broker.call("POST", "api/kernels", token, json=refused_start())
        assert reply.status_code == 409 and "no running server" in reply.text, reply.text
        broker_hub.start_server(CAROL)
        try:
            reply = broker.call("POST", "api/kernels", token, json=refused_start())
            assert reply.status_code == 403, reply.text
            reply = broker.call("POST", "api/kernels", token, json=refused_start())
            assert reply.status_code == 403, reply.text
        finally:
            broker_hub.stop_server(CAROL)
        # Asked again for each "not running", then the running server was cached.
        assert broker.hub_requests() == [TOKEN_LOOKUP] + [user_lookup(CAROL)] * 3
