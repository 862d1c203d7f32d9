"""Shared pieces of the provisioner tests: catalog lookups, kernel containers, servers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
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


async def kernel_status(fetch: Callable[..., Any], kernel_id: str) -> dict[str, Any]:
    """The kernel's entry in ``GET /gpuenv/api/kernels/{id}``."""
    return json.loads((await fetch("gpuenv", "api", "kernels", kernel_id)).body)


async def until_status(
    fetch: Callable[..., Any],
    kernel_id: str,
    check: Callable[[dict[str, Any]], Any],
    what: str,
    timeout: float = 60,
) -> dict[str, Any]:
    """Poll the kernel's entry until ``check`` holds; fail naming ``what`` and the entry."""
    deadline = time.monotonic() + timeout
    while True:
        status = await kernel_status(fetch, kernel_id)
        if check(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {status}")
        await asyncio.sleep(0.3)
