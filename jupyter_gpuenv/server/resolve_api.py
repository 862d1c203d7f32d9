"""REST: which kernel of this server runs a notebook, from the environment record it carries."""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.utils import ensure_async

from ..errors import BadRequest
from ..provisioning.notebook_kernel import notebook_record, resolve_record
from .base import GpuEnvHandler, authorized, web


class ResolveHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.get_query_argument("path", "").strip()
        if not path:
            raise BadRequest("the query parameter 'path' (a notebook's path) is required")
        contents_manager: Any = self.settings["contents_manager"]
        model = await ensure_async(contents_manager.get(path, content=True, type="notebook"))
        content = model.get("content") if isinstance(model, dict) else None
        metadata = content.get("metadata") if isinstance(content, dict) else None
        record = notebook_record(metadata)
        environments = (await self.gpuenv.catalog.snapshot()).environments
        # Fingerprints read package records: off the event loop.
        resolution = await asyncio.to_thread(resolve_record, record, environments)
        self.write_json({"path": model["path"], **resolution.to_json()})


handlers = [(r"/gpuenv/api/resolve", ResolveHandler)]
