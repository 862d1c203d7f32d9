"""REST: which kernel of this server runs a notebook, from the environment record it carries,
and rebuilding that environment when it is missing (environments/create/restore.py).

``POST /gpuenv/api/notebooks/restore`` answers 200 when nothing is built (the environment
is here, or it is a Docker image: what to pull) and 202 with a create job otherwise. The
notebook file is not rewritten: the Lab switches the notebook's kernel when the job is
done, and the next save records the new environment.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.utils import ensure_async

from ..environments.create.creator import EnvironmentCreator
from ..environments.create.job import CreateJob
from ..environments.create.restore import ImageToPull, present_environment, restore_request
from ..environments.fingerprint import environment_fingerprint
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
        model, record = await notebook_and_record(self.settings["contents_manager"], path)
        environments = (await self.gpuenv.catalog.snapshot()).environments
        # Fingerprints read package records: off the event loop.
        resolution = await asyncio.to_thread(resolve_record, record, environments)
        self.write_json({"path": model["path"], **resolution.to_json()})


RESTORE_FIELDS = frozenset({"path", "name", "prefix", "cuda"})


class RestoreHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Present (200), a Docker image to pull (200), or a create job (202)."""
        body = self.restore_body()
        path = body["path"].strip()
        model, record = await notebook_and_record(self.settings["contents_manager"], path)
        answer: dict[str, Any] = {"path": model["path"], "kind": record.kind, "name": record.name}
        environments = (await self.gpuenv.catalog.snapshot()).environments
        here = await asyncio.to_thread(
            present_environment, record, environments, environment_fingerprint
        )
        if here is not None:
            answer.update(
                state="present",
                environment_id=here.id,
                kernel_name=here.kernel_name,
                display_name=here.display_name,
            )
            self.write_json(answer)
            return
        if record.kind == "docker":
            self.write_json({**answer, "state": "pull", **ImageToPull.of(record).to_json()})
            return
        creator = EnvironmentCreator(self.gpuenv.catalog)
        request = restore_request(record, body.get("name"), body.get("prefix"), body.get("cuda"))
        plan = await asyncio.to_thread(creator.plan, request)
        job = CreateJob("restore", name=plan.target.name, prefix=str(plan.target))
        job.engine, job.cuda = plan.engine, plan.cuda.version
        job.warnings += plan.warnings
        creator.start(plan, job)
        url = f"{self.base_url.rstrip('/')}/gpuenv/api/environments/jobs/{job.id}"
        self.set_header("Location", url)
        self.write_json({**answer, "state": "creating", "job": job.to_json()}, status=202)

    def restore_body(self) -> dict[str, Any]:
        body = self.string_fields(RESTORE_FIELDS, '{"path": "a.ipynb"}')
        if not str(body.get("path") or "").strip():
            raise BadRequest("'path' (the notebook's path) is required")
        return body


async def notebook_and_record(contents_manager: Any, path: str) -> tuple[dict, Any]:
    """The notebook's contents model and its record (BadRequest without one)."""
    model = await ensure_async(contents_manager.get(path, content=True, type="notebook"))
    content = model.get("content") if isinstance(model, dict) else None
    metadata = content.get("metadata") if isinstance(content, dict) else None
    return model, notebook_record(metadata)


handlers = [
    (r"/gpuenv/api/resolve", ResolveHandler),
    (r"/gpuenv/api/notebooks/restore", RestoreHandler),
]
