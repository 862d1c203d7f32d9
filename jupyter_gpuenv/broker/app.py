"""``jupyter gpuenv broker``: the JupyterHub service that alone holds the Docker endpoint.

Users' servers (``c.GpuEnv.broker_url``) ask it to list environments and to start,
signal and stop their kernels; it answers each caller from the Hub's identity and the
admin's rules (``c.GpuEnvBroker``) only. Runs as a Hub-managed service: the Hub sets
``JUPYTERHUB_SERVICE_URL`` (where it listens), ``JUPYTERHUB_SERVICE_PREFIX``,
``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any
from urllib.parse import urlparse

from tornado import httpserver, web
from traitlets import Unicode
from traitlets.config import Application, catch_config_error

from ..config import GpuEnv, GpuEnvBroker
from ..config_check import checked_config
from ..gpu.sampler import GpuSampler, build_gpu_sampler
from ..provisioning.container import orphans
from ..services import Services
from . import handlers
from . import rules as broker_rules
from .gpu_choice import HostGpus
from .hub import HubIdentity
from .kernels import KernelBroker


class BrokerApp(Application):
    """The kernel broker for JupyterHub (docs/jupyterhub.md)."""

    name = "jupyter-gpuenv-broker"
    description = __doc__
    classes = [GpuEnv, GpuEnvBroker]  # noqa: RUF012 (traitlets reads it from the class)
    aliases = {"config": "BrokerApp.config_file", "log-level": "Application.log_level"}  # noqa: RUF012

    config_file = Unicode("", config=True, help="A Python or JSON config file to load.")
    rules_config: GpuEnvBroker

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
        self.load_config_environ()
        self.log.setLevel(self.log_level)
        self.rules_config = GpuEnvBroker(parent=self)

    def rules(self) -> dict[str, Any]:
        """The admin's rules, checked; a bad one stops the broker naming it."""
        settings = self.rules_config
        broker_rules.check_rule("c.GpuEnvBroker.default_policy", settings.default_policy)
        for kind in ("group_policies", "user_policies"):
            rules = getattr(settings, kind)
            for name, rule in rules.items():
                broker_rules.check_rule(f"c.GpuEnvBroker.{kind}[{name!r}]", rule)
        return {
            "default": settings.default_policy,
            "groups": settings.group_policies,
            "users": settings.user_policies,
            "user_ids": settings.user_ids,
            "accounts": broker_rules.account_rules(settings.min_uid, settings.denied_groups),
        }

    def gpuenv_config(self) -> GpuEnv:
        config = checked_config(self.config, log=self.log)
        config.restrict_to_configured_images = True
        config.docker_allow_root = False
        config.docker_label_discovery = False
        config.docker_discover_pytorch_images = False
        config.hub_user = ""
        config.broker_url = ""
        return config

    def start(self) -> None:
        try:
            rules = self.rules()
        except broker_rules.RuleError as err:
            self.log.critical("%s", err)
            sys.exit(2)
        asyncio.run(self._serve(rules))

    async def _serve(self, rules: dict[str, Any]) -> None:
        settings = self.rules_config
        orphans.use_instance_id(settings.instance_id)
        config = self.gpuenv_config()
        services = Services.build(config, self.log, cache_path=None)
        sampler = build_gpu_sampler(config, log=self.log)
        broker = KernelBroker(
            config,
            services,
            rules,
            kernel_ip=settings.kernel_ip,
            log=self.log,
            host_gpus=lambda: host_gpus_of(sampler),
            require_encryption=settings.require_encryption,
        )
        try:
            await broker.reattach()
        except Exception as err:
            self.log.warning("Kernels of an earlier run not re-attached: %s", err)
        identity = HubIdentity(settings.hub_cache_seconds, self.log)
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/gpuenv-broker/")
        app = web.Application(
            handlers.routes(prefix),
            broker=broker,
            identity=identity,
            sampler=sampler,
            log_function=self._log_request,
        )
        url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8890"))
        server = httpserver.HTTPServer(app, xheaders=True, max_body_size=16 * 1024 * 1024)
        server.listen(url.port or 80, url.hostname or "127.0.0.1")
        self.log.info("gpuenv broker listening on %s%s", url.geturl().rstrip("/"), prefix)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        reaper = asyncio.create_task(self._reap(broker, identity))
        await stop.wait()
        reaper.cancel()
        server.stop()
        sampler.stop()
        services.stop()
        self.log.info("gpuenv broker stopped; its kernels keep running until it is back")

    async def _reap(self, broker: KernelBroker, identity: HubIdentity) -> None:
        """Remove the kernels of users whose server has stopped (culled, stopped, died)."""
        while True:
            await asyncio.sleep(self.rules_config.server_check_interval)
            for user in sorted(broker.users()):
                if await identity.server_running(user) is False:
                    removed = await broker.stop_all_of(user)
                    self.log.info("%s has no server any more: %d kernel(s) removed", user, removed)

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING
        request = handler.request
        self.log.log(level, "%d %s %s %.1fms", status, request.method, request.path,
                     1000 * request.request_time())


def host_gpus_of(sampler: GpuSampler) -> HostGpus | None:
    """The host's GPUs and their MIG devices from the latest NVML sample, None when NVML
    sees none."""
    sample = sampler.latest()
    if sample is None:
        try:
            sample = sampler.sample_now()
        except Exception:
            return None
    return HostGpus.of_snapshot(sample.snapshot)


main = BrokerApp.launch_instance
