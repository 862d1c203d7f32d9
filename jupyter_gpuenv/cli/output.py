"""What the subcommands share: services that are stopped after use, and JSON on stdout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import GpuEnv
from ..services import Services


@contextmanager
def open_services(config: GpuEnv) -> Iterator[Services]:
    """The server's services for one command; worker pools are shut down afterwards."""
    services = Services.build(config)
    try:
        yield services
    finally:
        services.stop()


def print_json(document: Any) -> None:
    """The document as the REST API serves it, indented for a reader."""
    print(json.dumps(document, indent=2))
