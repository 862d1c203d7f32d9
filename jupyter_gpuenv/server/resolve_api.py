"""REST: which kernel of this server runs a notebook, from the environment record it carries."""

from __future__ import annotations

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
        self.write_json({"path": model["path"], **resolve_record(record, environments).to_json()})


handlers = [(r"/gpuenv/api/resolve", ResolveHandler)]
