"""REST: the compatibility doctor over the catalog, for the real or a hypothetical host."""

from __future__ import annotations

import asyncio
from typing import Any

from ..doctor.host_probe import HostProbe
from ..doctor.report import (
    CompatibilityAnnotator,
    doctor_report,
    hypothetical_host_or_none,
    select_environments,
)
from ..gpu.grant import read_user_grant
from .base import GpuEnvHandler, authorized, web

HOST_SERVICE = "doctor_host"


def install(state: Any, log: Any = None) -> None:
    """Server wiring: one cached host probe, and the catalog annotator that fills
    ``compatibility`` on every environment after each scan."""
    probe = HostProbe(grant=read_user_grant(state.config.user_gpus_env))
    state.services[HOST_SERVICE] = probe
    state.catalog.annotators.append(CompatibilityAnnotator(probe, state.config, log=log))


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
            probe = self.gpuenv.services.get(HOST_SERVICE) or HostProbe()
            host = await asyncio.to_thread(probe)
        envs = await self.gpuenv.catalog.list_environments()
        envs = select_environments(envs, self.get_query_argument("env", None))
        self.write_json(doctor_report(envs, host, self.gpuenv.config))


handlers = [(r"/gpuenv/api/doctor", DoctorHandler)]
