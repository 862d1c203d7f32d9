"""REST: GPU status, ``GET /gpuenv/api/gpus`` (the shared sample, never a fresh NVML call).

``?history=SECONDS`` adds the sampler's recent history (``history`` in the body): shared
timestamps and, per GPU and per kernel, one value for each. In swarm mode ``cluster``
says where this server's kernels run: the GPUs Swarm gave them are on other hosts, not in
this host's sample. With the kernel broker (``c.GpuEnv.broker_url``) the sample is the
broker's, which alone can tell which container (so which user) a GPU process belongs to.
"""

from __future__ import annotations

import asyncio
import json
import math

from ..broker_client import BrokerClient, BrokerError
from .base import GpuEnvHandler, authorized, web
from .cluster_api import cluster_kernels


class GpusHandler(GpuEnvHandler):
    """``GET /gpuenv/api/gpus``: the latest GPU sample, attributed to kernels, per user."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        seconds = self.history_argument()
        body = await self.brokered_body()
        if body is None:
            body = (await self.gpuenv.gpu_sampler.current()).body
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        extra = b""
        if seconds is not None:
            # Both parts are encoded once per sample; the history joins the sample's object.
            extra += b',"history":' + self.gpuenv.gpu_sampler.history.series_json(seconds)
        if self.gpuenv.config.scheduler == "swarm":
            extra += b',"cluster":' + json.dumps(cluster_kernels(self)).encode()
        self.finish(body[:-1] + extra + b"}" if extra else body)

    async def brokered_body(self) -> bytes | None:
        """The broker's GPU status for this server's user; None without a broker."""
        url = self.gpuenv.config.broker_url
        if not url:
            return None
        try:
            data = await asyncio.to_thread(BrokerClient(url).gpus)
        except BrokerError as err:
            # Never the broker's 401/403 as ours: the Lab would take it for a lost login.
            raise web.HTTPError(503, f"GPU status from the kernel broker: {err.message}") from err
        return json.dumps(data, separators=(",", ":")).encode()

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
