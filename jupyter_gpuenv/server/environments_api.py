"""REST: list, show, refresh and export environments.

Listing answers from the catalog's in-memory snapshot, whose JSON is serialised once per
snapshot; a request never probes unless nothing has been scanned yet or it asks to.
``?partial=true`` never waits for a scan: before the first one has ended it answers the
environments probed so far with the scan's progress.
"""

from __future__ import annotations

from .base import GpuEnvHandler, authorized, web


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


ENV_ID = r"(?P<env_id>[A-Za-z0-9._-]+)"

handlers = [
    (r"/gpuenv/api/environments", EnvironmentsHandler),
    (r"/gpuenv/api/environments/refresh", RefreshHandler),
    (rf"/gpuenv/api/environments/{ENV_ID}", EnvironmentHandler),
    (rf"/gpuenv/api/environments/{ENV_ID}/export", ExportHandler),
]
