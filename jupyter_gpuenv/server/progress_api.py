"""REST: what long work is at, ``GET /gpuenv/api/progress``.

Kernel starts (their steps: a kernel-layer build, waits on something) from the start
registry, environment creates (solve, download, link, pip) and the catalog's scan
("probing 3 of 12 environments"). Everything is in
memory: the answer never waits, so clients can poll it while a start or a scan runs.
"""

from __future__ import annotations

from ..environments.create import job as create_jobs
from ..provisioning import start_progress
from .base import GpuEnvHandler, authorized, web


class ProgressHandler(GpuEnvHandler):
    """``GET /gpuenv/api/progress[?kernel_id=ID][&environment_id=ID]``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        kernel_id = self.get_query_argument("kernel_id", None) or None
        environment_id = self.get_query_argument("environment_id", None) or None
        starts = start_progress.starts(kernel_id=kernel_id, environment_id=environment_id)
        self.set_header("Cache-Control", "no-store")
        self.write_json(
            {
                "starts": [start.to_json() for start in starts],
                "listing": self.gpuenv.catalog.scan_progress().to_json(),
                "creates": [job.to_json() for job in create_jobs.jobs()],
            }
        )


handlers = [(r"/gpuenv/api/progress", ProgressHandler)]
