"""Create, clone and remove against the catalog: the one entry point the CLI and REST share.

After a create or remove the catalog is re-scanned, so the environment is listed (and
gets its kernelspec) or is gone by the time the command or job says it is done. Clone
is ``export --no-builds`` of the source, created under the new name.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..catalog import Catalog
from ..model import Environment
from . import job as jobs
from .create import CreatePlan, CreateRequest, plan_create, run_create
from .cuda import host_cuda_version
from .job import CreateJob
from .remove import NotRemovable, remove_prefix
from .spec import parse_environment_yml


class EnvironmentCreator:
    """Plans and runs creates for one catalog; jobs run in threads for the server."""

    def __init__(
        self, catalog: Catalog, host_cuda: Callable[[], str | None] = host_cuda_version
    ) -> None:
        self.catalog = catalog
        self.host_cuda = host_cuda

    def plan(self, request: CreateRequest) -> CreatePlan:
        """Every check that needs no solving (400/403/409 come from here)."""
        return plan_create(self.catalog.config, request, self.host_cuda)

    def clone_request(
        self, source: str, name: str | None, prefix: str | None, cuda: str | None = None
    ) -> CreateRequest:
        """The source's ``--no-builds`` export as a request under the new name or prefix."""
        _filename, text = self.catalog.export_sync(source, no_builds=True)
        spec = parse_environment_yml(text)
        spec.prefix = None
        return CreateRequest(spec=spec, name=name, prefix=prefix, cuda=cuda)

    def run(self, plan: CreatePlan, job: CreateJob) -> Environment | None:
        """Create, then list it: the job ends done with the environment's id."""
        run_create(plan, job)
        job.step("catalog", "Adding the environment to the catalog")
        try:
            env = self.listed(plan.target)
        except Exception as err:  # the environment is made; only the listing lags
            job.warnings.append(f"the catalog could not list {plan.target} yet: {err}")
            job.finish(str(plan.target), None)
            return None
        if env is None:
            job.warnings.append(
                f"{plan.target} is not in the folders the catalog lists "
                "(c.GpuEnv.conda_envs_dirs); it gets no kernel until it is"
            )
        job.finish(str(plan.target), env.id if env else None)
        return env

    def start(self, plan: CreatePlan, job: CreateJob) -> threading.Thread:
        """Run in a thread of its own (a create takes minutes; the server must not wait)."""
        jobs.register(job)

        def work() -> None:
            try:
                self.run(plan, job)
            except BaseException:  # a cancel ends the thread as an interrupt
                pass  # the job carries the failure for whoever polls it

        thread = threading.Thread(target=work, name=f"gpuenv-create-{job.id}", daemon=True)
        thread.start()
        return thread

    def remove(self, reference: str) -> Path:
        """Remove a catalog environment (id or name) or a prefix path; the catalog forgets it."""
        name: str | None = None
        if os.sep in reference and os.path.isdir(reference):
            prefix = Path(reference)
        else:
            env = self.catalog.resolve_sync(reference)
            if env.kind != "conda":
                raise NotRemovable(
                    f"{env.name} is a {env.kind} environment; only conda environments "
                    "are removed here"
                )
            prefix, name = Path(env.location["prefix"]), env.name
        remove_prefix(self.catalog.config, prefix, name)
        self.catalog.snapshot_sync(refresh=True)
        return prefix

    def listed(self, prefix: Path) -> Environment | None:
        snapshot = self.catalog.snapshot_sync(refresh=True)
        wanted = os.path.realpath(prefix)
        for env in snapshot.environments:
            location = env.location.get("prefix")
            if location and os.path.realpath(location) == wanted:
                return env
        return None
