"""Prometheus: ``GET /gpuenv/metrics``, GPU and per-kernel GPU use as exposition text.

Authenticated like every other endpoint (a Jupyter token in an ``Authorization: token
...`` header, or jupyter_server's other means); the figures come from the shared sample.
"""

from __future__ import annotations

import getpass

from ..gpu.metrics import CONTENT_TYPE, render_metrics
from .base import GpuEnvHandler, authorized, web


class MetricsHandler(GpuEnvHandler):
    """``GET /gpuenv/metrics``: the latest GPU sample in the Prometheus text format."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        sample = await self.gpuenv.gpu_sampler.current()
        text = render_metrics(sample.snapshot, server_user=server_user(self.gpuenv.config))
        self.set_header("Cache-Control", "no-store")
        # APIHandler.finish sets the Content-Type itself (JSON unless told otherwise).
        self.finish(text.encode("utf-8"), set_content_type=CONTENT_TYPE)


def server_user(config: object) -> str:
    """Whom this server's kernels belong to: the JupyterHub user, else the unix user."""
    hub_user = getattr(config, "hub_user", "")
    if hub_user:
        return str(hub_user)
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container without /etc/passwd entry)
        return ""


handlers = [(r"/gpuenv/metrics", MetricsHandler)]
