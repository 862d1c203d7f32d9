"""The server extension: builds the shared pieces once and registers the handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jupyter_server.extension.application import ExtensionApp

from ..config import GpuEnv
from ..environments.catalog import Catalog
from ..provisioning.orphans import start_orphan_sweep
from . import doctor_api, environments_api, gpus_api, openapi_api


@dataclass
class ServerState:
    """What handlers reach through ``self.gpuenv``: config and the long-lived services."""

    config: GpuEnv
    catalog: Catalog
    server: Any
    services: dict[str, Any] = field(default_factory=dict)


class GpuEnvExtension(ExtensionApp):
    """``jupyter_gpuenv`` server extension (REST API under ``/gpuenv/api/``)."""

    name = "jupyter_gpuenv"
    load_other_extensions = True

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Make our kernelspec manager the server's, unless the admin configured one.

        jupyter_server applies only ``jpserver_extensions`` from jupyter_server_config.d
        files, not other settings; linking runs before the server builds its managers.
        """
        if "kernel_spec_manager_class" not in serverapp.config.get("ServerApp", {}):
            from ..provisioning.kernelspecs import GpuEnvKernelSpecManager

            serverapp.kernel_spec_manager_class = GpuEnvKernelSpecManager
        super()._link_jupyter_server_extension(serverapp)

    def initialize_settings(self) -> None:
        config = GpuEnv(parent=self.serverapp, log=self.log)
        catalog = Catalog(config, log=self.log)
        ksm = self.serverapp.kernel_spec_manager
        if hasattr(ksm, "use_catalog"):
            ksm.use_catalog(catalog)
        self.state = ServerState(config=config, catalog=catalog, server=self.serverapp)
        self.settings["gpuenv"] = self.state
        doctor_api.install(self.state, self.log)
        # Kernel containers left by a server that died (kill -9) are removed in the
        # background, so a slow or absent Docker never delays startup.
        start_orphan_sweep(self.log)
        gpus_api.install(self.state, self.log)
        self.log.info("jupyter_gpuenv: REST API at %sgpuenv/api/", self.serverapp.base_url)

    def initialize_handlers(self) -> None:
        for module in (environments_api, gpus_api, doctor_api, openapi_api):
            self.handlers.extend(module.handlers)

    async def stop_extension(self) -> None:
        for service in self.state.services.values():
            stop = getattr(service, "stop", None)
            if stop is not None:
                result = stop()
                if hasattr(result, "__await__"):
                    await result
        self.state.catalog.stop()
