"""REST: the extension's own state (version, invalid settings) and JSON for unknown routes.

The Lab panel reads ``GET /gpuenv/api/status`` once to show a banner when the admin's
configuration has invalid settings; those settings were left at their defaults (or, for
a ``docker_images`` entry, left out) so everything else keeps working.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ..config_check import problems_json
from .base import GpuEnvHandler, authorized, web


class StatusHandler(GpuEnvHandler):
    """``GET /gpuenv/api/status``: ``{"version", "admin", "problems", "warm_kernels"}``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        config = self.gpuenv.config
        warm = self.gpuenv.warm
        self.write_json(
            {
                "version": __version__,
                # A JupyterHub user's server is configured by the Hub's admin, not by them.
                "admin": not config.hub_user,
                "problems": problems_json(config),
                # Each warm kernel pool: size, ready, starting, last_error (README).
                "warm_kernels": warm.status() if warm is not None else None,
            }
        )


class UnknownRouteHandler(GpuEnvHandler):
    """Any other ``/gpuenv/api/...`` path: a JSON 404 (after the usual auth), never HTML."""

    @web.authenticated
    @authorized
    def _not_found(self, *args: Any, **kwargs: Any) -> None:
        raise web.HTTPError(404, f"no gpuenv API route {self.request.path}")

    get = post = put = patch = delete = _not_found


handlers = [(r"/gpuenv/api/status", StatusHandler)]
fallback = (r"/gpuenv/api/.*", UnknownRouteHandler)
