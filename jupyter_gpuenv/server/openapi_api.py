"""REST: the OpenAPI 3 document of this API, shipped in the package."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .base import GpuEnvHandler, authorized, web

SPEC_PATH = Path(__file__).with_name("openapi.yaml")


@cache
def openapi_document() -> dict[str, Any]:
    """The parsed OpenAPI document (also used by the test that keeps it in step)."""
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


class OpenAPIJsonHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(openapi_document())


class OpenAPIYamlHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.set_header("Content-Type", "application/yaml; charset=utf-8")
        self.finish(SPEC_PATH.read_text(encoding="utf-8"))


handlers = [
    (r"/gpuenv/api/openapi.json", OpenAPIJsonHandler),
    (r"/gpuenv/api/openapi.yaml", OpenAPIYamlHandler),
]

__all__ = ["handlers", "openapi_document"]
