"""The server extension: builds the services once and registers the handlers."""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.extension.application import ExtensionApp

from ..config_check import checked_config
from ..environments.create import job as create_jobs
from ..gpu.sampler import build_gpu_sampler
from ..provisioning.container.orphans import start_orphan_sweep
from ..provisioning.kernelspecs import GpuEnvKernelSpecManager
from ..provisioning.warm.handout import KernelHandout
from ..provisioning.warm.pools import WarmKernels
from ..services import Services
from . import (
    cluster_api,
    doctor_api,
    environments_api,
    gpus_api,
    kernels_api,
    metrics_api,
    openapi_api,
    progress_api,
    resolve_api,
    status_api,
)
from .gpu_reclaimer import GpuIdleReclaimer
from .notebook_hook import NotebookRecordHook, install_notebook_hook
from .state import ServerState

# How long a stopping server waits for running creates to cancel and clean up.
CREATE_STOP_SECONDS = 20.0


class GpuEnvExtension(ExtensionApp):
    """``jupyter_gpuenv`` server extension (REST API under ``/gpuenv/api/``)."""

    name = "jupyter_gpuenv"
    load_other_extensions = True
    state: ServerState

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Make our kernelspec manager the server's, unless the admin configured one.

        jupyter_server applies only ``jpserver_extensions`` from jupyter_server_config.d
        files, not other settings; linking runs before the server builds its managers.
        """
        if "kernel_spec_manager_class" not in serverapp.config.get("ServerApp", {}):
            serverapp.kernel_spec_manager_class = GpuEnvKernelSpecManager
        super()._link_jupyter_server_extension(serverapp)

    def initialize_settings(self) -> None:
        serverapp = self.serverapp
        assert serverapp is not None  # settings are initialised after linking to the server
        config = checked_config(parent=serverapp, log=self.log)
        services = Services.build(config, log=self.log)
        ksm = serverapp.kernel_spec_manager
        if isinstance(ksm, GpuEnvKernelSpecManager):
            ksm.use_services(services)
        warm = None
        if config.warm_kernels:
            warm = WarmKernels(config, services.catalog, serverapp.kernel_manager, self.log)
        sampler = build_gpu_sampler(
            config,
            serverapp,
            log=self.log,
            extra_records=warm.kernel_records if warm is not None else None,
        )
        self.state = ServerState(
            services=services, gpu_sampler=sampler, server=serverapp, warm=warm
        )
        self.settings["gpuenv"] = self.state
        # Saved notebooks carry the environment they ran in (metadata.gpuenv), whichever
        # client saves them; an admin's own pre_save_hook runs first and stays.
        hook = NotebookRecordHook(self.state, self.log)
        install_notebook_hook(serverapp.contents_manager, hook, self.log)
        state = self.state
        self.state.reclaimer = GpuIdleReclaimer(
            config,
            lambda: state.gpu_sampler.current(),  # the sampler in use (tests swap it)
            serverapp.kernel_manager,
            self.log,
        )
        self.state.reclaimer.start()
        # Kernel containers left by a server that died (kill -9) are removed in the
        # background, so a slow or absent Docker never delays startup.
        start_orphan_sweep(self.log, config.docker_host or None)
        if warm is not None and warm.enabled:
            # Starts of a pooled kernelspec take a warm kernel (provisioning/warm/).
            KernelHandout(serverapp.kernel_manager, warm, self.log).install()
        self.log.info("jupyter_gpuenv: REST API at %sgpuenv/api/", serverapp.base_url)

    def initialize_handlers(self) -> None:
        for module in (
            environments_api,
            gpus_api,
            kernels_api,
            metrics_api,
            doctor_api,
            cluster_api,
            openapi_api,
            progress_api,
            resolve_api,
            status_api,
        ):
            self.handlers.extend(module.handlers)
        self.handlers.append(status_api.fallback)  # last: JSON 404 for unknown API paths

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """On the running event loop: start filling the warm kernel pools."""
        if self.state.warm is not None:
            self.state.warm.start()

    async def stop_extension(self) -> None:
        left = await asyncio.to_thread(create_jobs.stop_all, CREATE_STOP_SECONDS)
        for job in left:
            self.log.warning(
                "jupyter_gpuenv: the create of %s was still running at shutdown; its "
                "hidden staging folder is removed by the next create there",
                job.prefix,
            )
        if self.state.warm is not None:
            await self.state.warm.stop()
        if self.state.reclaimer is not None:
            self.state.reclaimer.stop()
        self.state.gpu_sampler.stop()
        self.state.services.stop()
