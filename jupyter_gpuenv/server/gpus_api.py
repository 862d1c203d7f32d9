"""REST: GPU status, ``GET /gpuenv/api/gpus`` (the shared sample, never a fresh NVML call).

``?history=SECONDS`` adds the sampler's recent history (``history`` in the body): shared
timestamps and, per GPU and per kernel, one value for each. In swarm mode ``cluster``
says where this server's kernels run: the GPUs Swarm gave them are on other hosts, not in
this host's sample.
"""

from __future__ import annotations

import json
import math

from .base import GpuEnvHandler, authorized, web
from .cluster_api import cluster_kernels


class GpusHandler(GpuEnvHandler):
    """``GET /gpuenv/api/gpus``: the latest GPU sample, attributed to kernels, per user."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        seconds = self.history_argument()
        sample = await self.gpuenv.gpu_sampler.current()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        extra = b""
        if seconds is not None:
            # Both parts are encoded once per sample; the history joins the sample's object.
            extra += b',"history":' + self.gpuenv.gpu_sampler.history.series_json(seconds)
        if self.gpuenv.config.scheduler == "swarm":
            extra += b',"cluster":' + json.dumps(cluster_kernels(self)).encode()
        self.finish(sample.body[:-1] + extra + b"}" if extra else sample.body)

    def history_argument(self) -> float | None:
        """``history`` as seconds (> 0, finite); None when absent; 400 otherwise."""
        raw = self.get_query_argument("history", None)
        if raw is None:
            return None
        try:
            seconds = float(raw.strip())
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise web.HTTPError(
                400,
                f"query parameter 'history' must be a number of seconds greater than 0, "
                f"not {raw[:40]!r}",
            )
        return seconds


handlers = [(r"/gpuenv/api/gpus", GpusHandler)]
