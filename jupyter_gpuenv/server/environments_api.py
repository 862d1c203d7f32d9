"""REST: list, show, refresh and export environments."""

from __future__ import annotations

from .base import GpuEnvHandler, authorized, web


class EnvironmentsHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        refresh = self.bool_argument("refresh")
        envs = await self.gpuenv.catalog.list_environments(refresh=refresh)
        self.write_json({"environments": [env.to_json() for env in envs]})


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
        envs = await self.gpuenv.catalog.list_environments(refresh=True)
        self.write_json({"environments": [env.to_json() for env in envs]})


class ExportHandler(GpuEnvHandler):
    @web.authenticated
    @authorized
    async def get(self, env_id: str) -> None:
        no_builds = self.bool_argument("no_builds")
        from_history = self.bool_argument("from_history")
        filename, text = await self.gpuenv.catalog.export(
            env_id, no_builds=no_builds, from_history=from_history
        )
        self.set_header("Content-Type", "text/yaml; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.finish(text)


ENV_ID = r"(?P<env_id>[A-Za-z0-9._-]+)"

handlers = [
    (r"/gpuenv/api/environments", EnvironmentsHandler),
    (r"/gpuenv/api/environments/refresh", RefreshHandler),
    (rf"/gpuenv/api/environments/{ENV_ID}", EnvironmentHandler),
    (rf"/gpuenv/api/environments/{ENV_ID}/export", ExportHandler),
]
