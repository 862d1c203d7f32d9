"""A brokered kernel outlives the kernel manager that started it.

A plain jupyter_client program with Alice's Hub token and ``c.GpuEnv.broker_url`` (what
her server has) starts a kernel through the real broker; a second kernel manager, as a
restarted server builds one, loads the first one's connection info and provisioner info
(the runtime's record through JSON): the kernel polls as running, is interrupted through
the broker and shut down, and its container is gone.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import docker
import pytest
from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.provisioning.container.provisioner import DockerProvisioner
from jupyter_gpuenv.provisioning.kernelspecs import GpuEnvKernelSpecManager
from jupyter_gpuenv.services import Services
from tests.broker.conftest import ALICE
from tests.broker.hub_broker import BrokerHub
from tests.broker.user_calls import containers_of_kernel, gone
from tests.support.interrupts import run_until_interrupted

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(600)]


async def test_a_reloaded_brokered_kernel_runs_interrupts_and_shuts_down(
    broker_hub: BrokerHub,
    docker_client: docker.DockerClient,
    no_leftovers: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", broker_hub.tokens[ALICE])
    settings = {
        "broker_url": broker_hub.broker_url,
        "conda_envs_dirs": [],
        "venv_dirs": [],
        "docker_label_discovery": False,
    }
    config = Config({"GpuEnv": settings})
    ksm = GpuEnvKernelSpecManager(config=config)
    services = Services.build(GpuEnv(config=config), cache_path=tmp_path / "cache.json")
    ksm.use_services(services)
    envs = await asyncio.to_thread(services.catalog.list_environments_sync)
    (env,) = [e for e in envs if e.name == "python"]
    first = AsyncKernelManager(kernel_name=env.kernel_name, kernel_spec_manager=ksm, config=config)
    await first.start_kernel(cwd=str(broker_hub.home(ALICE)))
    kernel_id = first.kernel_id
    assert kernel_id is not None and isinstance(first.provisioner, DockerProvisioner)
    try:
        assert first.provisioner.brokered
        (container,) = containers_of_kernel(docker_client, kernel_id)
        info = await first.provisioner.get_provisioner_info()
        record = json.loads(json.dumps(info["runtime"]))
        assert record["kind"] == "brokered" and record["container_name"] == container.name

        second = AsyncKernelManager(
            kernel_name=env.kernel_name, kernel_spec_manager=ksm, config=config
        )
        second.load_connection_info(first.get_connection_info())
        provisioner = DockerProvisioner(
            kernel_id=kernel_id, kernel_spec=second.kernel_spec, parent=second
        )
        await provisioner.load_provisioner_info({**info, "runtime": record})
        second.kernel_id = kernel_id
        second.provisioner = provisioner

        assert provisioner.has_process and provisioner.brokered
        assert await provisioner.poll() is None
        assert await second.is_alive()
        assert provisioner.runtime is not None and provisioner.runtime.record() == record
        assert provisioner.container_name == container.name

        reply = await run_until_interrupted(second)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        assert await provisioner.poll() is None

        await second.shutdown_kernel()
        gone(docker_client, kernel_id, 60)
        assert await first.provisioner.poll() == -1  # the broker knows it no more
    finally:
        await first.provisioner.cleanup()
        services.stop()
