"""REST: list, show, refresh, export, create and remove environments.

Listing answers from the catalog's in-memory snapshot, whose JSON is serialised once per
snapshot; a request never probes unless nothing has been scanned yet or it asks to.
``?partial=true`` never waits for a scan: before the first one has ended it answers the
environments probed so far with the scan's progress. A create is checked at once (400,
403, 409) and answered 202 with a job to follow; the engine runs in a thread of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..environments.create import job as create_jobs
from ..environments.create.create import CreateRequest
from ..environments.create.creator import EnvironmentCreator
from ..environments.create.errors import NotCancellable
from ..environments.create.job import CreateJob
from ..environments.create.spec import parse_environment_yml
from ..errors import BadRequest, EnvironmentNotFound
from .base import GpuEnvHandler, authorized, web

CREATE_FIELDS = frozenset({"yaml", "clone", "name", "prefix", "cuda"})


class EnvironmentsHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        refresh = self.bool_argument("refresh")
        if self.bool_argument("partial") and not refresh:
            self.finish_partial()
            return
        snapshot = await self.gpuenv.catalog.snapshot(refresh=refresh)
        self.set_header("Content-Type", "application/json")
        self.finish(snapshot.listing_json())

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Create (``yaml``) or clone (``clone``: an environment id or name): 202 + job."""
        body = self.json_body()
        creator = EnvironmentCreator(self.gpuenv.catalog)
        request = await asyncio.to_thread(_create_request, creator, body)
        plan = await asyncio.to_thread(creator.plan, request)
        action = "clone" if body.get("clone") else "create"
        job = CreateJob(action, name=plan.target.name, prefix=str(plan.target))
        job.engine, job.cuda = plan.engine, plan.cuda.version
        job.warnings += plan.warnings  # before solving: in the 202 answer already
        creator.start(plan, job)
        self.set_header("Location", self.job_url(job.id))
        self.write_json(job.to_json(), status=202)

    def job_url(self, job_id: str) -> str:
        return f"{self.base_url.rstrip('/')}/gpuenv/api/environments/jobs/{job_id}"

    def json_body(self) -> dict[str, Any]:
        body = self.string_fields(CREATE_FIELDS, '{"yaml": "..."}')
        if bool(body.get("yaml")) == bool(body.get("clone")):
            raise BadRequest("give either 'yaml' (an environment.yml) or 'clone' (an environment)")
        if body.get("name") and body.get("prefix"):
            raise BadRequest("give 'name' or 'prefix' for the new environment, not both")
        prefix = body.get("prefix")
        if prefix and not (prefix.startswith("/") or prefix.startswith("~/")):
            raise BadRequest(f"'prefix' must be an absolute path, not {prefix!r}")
        return body

    def finish_partial(self) -> None:
        listing = self.gpuenv.catalog.partial_listing()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(listing.listing_json())


class EnvironmentHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    async def get(self, env_id: str) -> None:
        env = await self.gpuenv.catalog.get(env_id)
        self.write_json(env.to_json())

    @web.authenticated
    @authorized
    async def delete(self, env_id: str) -> None:
        """Remove a conda environment this user owns (never a base install)."""
        await self.gpuenv.catalog.get(env_id)
        creator = EnvironmentCreator(self.gpuenv.catalog)
        prefix = await asyncio.to_thread(creator.remove, env_id)
        self.write_json({"id": env_id, "removed": str(prefix)})


class RefreshHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        snapshot = await self.gpuenv.catalog.snapshot(refresh=True)
        self.set_header("Content-Type", "application/json")
        self.finish(snapshot.listing_json())


class ExportHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    async def get(self, env_id: str) -> None:
        no_builds = self.bool_argument("no_builds")
        from_history = self.bool_argument("from_history")
        filename, text = await self.gpuenv.catalog.export(
            env_id, no_builds=no_builds, from_history=from_history
        )
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        # APIHandler.finish would label the body application/json otherwise
        self.finish(text, set_content_type="text/yaml; charset=utf-8")


class CreateJobsHandler(GpuEnvHandler):
    """Creates and clones under way, and those ended lately."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write_json({"jobs": [job.to_json() for job in create_jobs.jobs()]})


class CreateJobHandler(GpuEnvHandler):
    """One create's steps and outcome; poll until ``state`` is done or failed."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = create_jobs.find(job_id)
        if job is None:
            raise EnvironmentNotFound(f"no create job with id {job_id!r}")
        self.set_header("Cache-Control", "no-store")
        self.write_json(job.to_json())

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        """Cancel a running create: it stops (a pip or conda child at once, rattler's
        download or link when that step ends) and removes what it made; 202 + the job."""
        job = create_jobs.find(job_id)
        if job is None:
            raise EnvironmentNotFound(f"no create job with id {job_id!r}")
        if not job.cancel():
            where = job.prefix or job.name
            if job.state == "running":
                reason = f"{where} is already made; remove it instead of cancelling"
            else:
                reason = f"the create of {where} has ended ({job.state})"
            raise NotCancellable(reason)
        self.write_json(job.to_json(), status=202)


def _create_request(creator: EnvironmentCreator, body: dict[str, Any]) -> CreateRequest:
    """The request a body asks for; the clone's export runs here (it reads the source)."""
    if body.get("clone"):
        return creator.clone_request(
            body["clone"], body.get("name"), body.get("prefix"), body.get("cuda")
        )
    spec = parse_environment_yml(body["yaml"])
    return CreateRequest(
        spec=spec, name=body.get("name"), prefix=body.get("prefix"), cuda=body.get("cuda")
    )


ENV_ID = r"(?P<env_id>[A-Za-z0-9._-]+)"
JOB_ID = r"(?P<job_id>[A-Za-z0-9]+)"

handlers = [
    (r"/gpuenv/api/environments", EnvironmentsHandler),
    (r"/gpuenv/api/environments/refresh", RefreshHandler),
    (r"/gpuenv/api/environments/jobs", CreateJobsHandler),
    (rf"/gpuenv/api/environments/jobs/{JOB_ID}", CreateJobHandler),
    (rf"/gpuenv/api/environments/{ENV_ID}", EnvironmentHandler),
    (rf"/gpuenv/api/environments/{ENV_ID}/export", ExportHandler),
]
