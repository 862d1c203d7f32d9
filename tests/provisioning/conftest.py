"""Shared pieces of the provisioner tests: catalog lookups, kernel containers, bounded waits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jupyter_gpuenv.provisioning import labels
from tests.provisioning.server_process import ServerProcess, start_server
from tests.support.server_config import server_config as server_config  # re-exported


async def eventually(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` (bounded, without blocking the loop) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)


def kernel_containers(client: Any, **match: str) -> list[Any]:
    """Kernel containers (running or not) whose labels match ``match`` (label name -> value)."""
    filters = [f"{labels.ROLE}=kernel"] + [f"{k}={v}" for k, v in match.items()]
    return client.containers.list(all=True, filters={"label": filters})


async def environment_named(fetch: Callable[..., Any], name: str) -> dict[str, Any]:
    """The catalog entry called ``name`` as the REST API lists it."""
    response = await fetch("gpuenv", "api", "environments")
    listing = json.loads(response.body)["environments"]
    matches = [env for env in listing if env["name"] == name]
    assert len(matches) == 1, listing
    return matches[0]


@pytest.fixture
def server_processes() -> Iterator[Callable[..., ServerProcess]]:
    """Start ``jupyter server`` processes; every one is stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(*args: Any, **kwargs: Any) -> ServerProcess:
        server = start_server(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
