"""Base handler: jupyter_server auth, JSON bodies and JSON errors (never HTML)."""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..errors import BadRequest, GpuEnvError
from .state import ServerState

AUTH_RESOURCE = "gpuenv"

__all__ = ["AUTH_RESOURCE", "GpuEnvHandler", "authorized", "web"]


class GpuEnvHandler(ExtensionHandlerMixin, APIHandler):
    """Every gpuenv endpoint derives from this; it answers errors as ``{"message": ...}``."""

    auth_resource = AUTH_RESOURCE

    @property
    def gpuenv(self) -> ServerState:
        """The running extension's state (services, GPU sampler)."""
        state: ServerState = self.settings["gpuenv"]
        return state

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def bool_argument(self, name: str) -> bool:
        raw = self.get_query_argument(name, "false").strip().lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off", ""):
            return False
        raise web.HTTPError(400, f"query parameter {name!r} must be true or false, not {raw!r}")

    def string_fields(self, fields: frozenset[str], example: str) -> dict[str, Any]:
        """The JSON object body of fields ``fields``, each a string when given; BadRequest
        naming what is wrong (``example`` shows the shape wanted)."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as err:
            raise BadRequest(f"the body must be JSON: {err}") from None
        if not isinstance(body, dict):
            raise BadRequest(f"the body must be a JSON object such as {example}")
        unknown = sorted(set(body) - fields)
        if unknown:
            raise BadRequest(f"unknown fields {unknown}; expected {sorted(fields)}")
        for key in fields:
            if body.get(key) is not None and not isinstance(body[key], str):
                raise BadRequest(f"{key!r} must be a string")
        return body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info:
            error = exc_info[1]
            if isinstance(error, GpuEnvError):
                message = error.message
            elif isinstance(error, web.HTTPError):
                message = error.log_message or error.reason or message
            else:
                message = f"Internal error: {type(error).__name__}: {error}"
        self.finish(json.dumps({"message": message, "status": status_code}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, GpuEnvError):
            self.set_status(value.status)
            self.log.warning("gpuenv %s %s: %s", self.request.method, self.request.uri, value)
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], GpuEnvError):
            status_code = exc_info[1].status
        super().send_error(status_code, **kwargs)
