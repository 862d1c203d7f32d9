"""What the subcommands share: a catalog that is stopped after use, and JSON on stdout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import GpuEnv
from ..environments.catalog import Catalog


@contextmanager
def open_catalog(config: GpuEnv) -> Iterator[Catalog]:
    """The server's catalog for one command; its worker pools are shut down afterwards."""
    catalog = Catalog(config)
    try:
        yield catalog
    finally:
        catalog.stop()


def print_json(document: Any) -> None:
    """The document as the REST API serves it, indented for a reader."""
    print(json.dumps(document, indent=2))
