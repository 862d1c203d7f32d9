"""A brokered kernel outlives the kernel manager that started it.

A plain jupyter_client program with Alice's Hub token and ``c.GpuEnv.broker_url`` (what
her server has) starts a kernel through the real broker; a second kernel manager, as a
restarted server builds one, loads the first one's connection info and provisioner info
(the runtime's record through JSON): the kernel polls as running, is interrupted through
the broker and shut down, and its container is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from jupyter_gpuenv.provisioning.container.provisioner import DockerProvisioner
from tests.broker.conftest import ALICE
from tests.broker.hub_broker import BrokerHub
from tests.broker.user_calls import containers_of_kernel, gone
from tests.support.reattach import first_manager, reloaded, run_until_interrupted

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(600)]


async def test_a_reloaded_brokered_kernel_runs_interrupts_and_shuts_down(
    broker_hub: BrokerHub,
    docker_client: docker.DockerClient,
    no_leftovers: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", broker_hub.tokens[ALICE])
    first, services, _ = await first_manager(
        {"broker_url": broker_hub.broker_url}, tmp_path / "cache.json", "python"
    )
    await first.start_kernel(cwd=str(broker_hub.home(ALICE)))
    kernel_id = first.kernel_id
    assert kernel_id is not None and isinstance(first.provisioner, DockerProvisioner)
    try:
        assert first.provisioner.brokered
        (container,) = containers_of_kernel(docker_client, kernel_id)
        second, provisioner, record = await reloaded(first)
        assert record["kind"] == "brokered" and record["container_name"] == container.name

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
