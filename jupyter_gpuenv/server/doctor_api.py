"""REST: the compatibility doctor over the catalog, for the real or a hypothetical host."""

from __future__ import annotations

import asyncio

from ..doctor.report import doctor_report, hypothetical_host_or_none, select_environments
from .base import GpuEnvHandler, authorized, web


class DoctorHandler(GpuEnvHandler):
    """``GET /gpuenv/api/doctor[?driver_version=X][&compute_capability=X.Y][&env=ID]``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        host = hypothetical_host_or_none(
            self.get_query_argument("driver_version", None),
            self.get_query_argument("compute_capability", None),
        )
        if host is None:
            host = await asyncio.to_thread(self.gpuenv.services.host)
        envs = await self.gpuenv.catalog.list_environments()
        envs = select_environments(envs, self.get_query_argument("env", None))
        self.write_json(doctor_report(envs, host, self.gpuenv.config))


handlers = [(r"/gpuenv/api/doctor", DoctorHandler)]
