"""Shared pieces of the provisioner tests: catalog lookups, kernel containers, servers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from jupyter_gpuenv.docker import labels
from tests.support.server_config import server_config as server_config  # re-exported


class Collect(logging.Handler):
    """Every message a logger emits (added to the server's log to read what it said)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


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
