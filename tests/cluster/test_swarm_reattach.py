"""A Swarm kernel outlives the kernel manager that started it.

A second kernel manager, as a restarted server builds one, loads the first one's
connection info and provisioner info (JSON, as a server would keep it): the kernel polls
as running on its node, is interrupted across hosts, and its shutdown removes the
service and its secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.provisioning.container.provisioner import DockerProvisioner
from tests.provisioning.server_process import make_shared_dir
from tests.support.reattach import first_manager, reloaded, run_until_interrupted
from tests.support.swarm import OLD_ENGINE_OPT_OUT, SwarmCluster
from tests.support.waits import eventually

pytestmark = [pytest.mark.swarm, pytest.mark.docker, pytest.mark.timeout(600)]


def kernel_services(swarm: SwarmCluster, kernel_id: str) -> list[dict]:
    filters = [f"{labels.ROLE}=kernel", f"{labels.KERNEL_ID}={kernel_id}"]
    return swarm.manager.api.services(filters={"label": filters})


def kernel_secrets(swarm: SwarmCluster, kernel_id: str) -> list[dict]:
    return swarm.manager.api.secrets(filters={"label": f"{labels.KERNEL_ID}={kernel_id}"})


async def test_a_reloaded_swarm_kernel_runs_interrupts_and_shuts_down(
    swarm: SwarmCluster, python_kernel_image: str, tmp_path: Path
) -> None:
    notebook_dir = make_shared_dir("gpuenv-swarm-reattach-", 4242, 4242)
    settings = {
        "scheduler": "swarm",
        "docker_host": swarm.manager_url,
        "docker_images": {"py": {"image": python_kernel_image, "gpus": 1}},
        **OLD_ENGINE_OPT_OUT,
    }
    first, services, _ = await first_manager(settings, tmp_path / "cache.json", "py")
    await first.start_kernel(cwd=str(notebook_dir))
    kernel_id = first.kernel_id
    assert kernel_id is not None and isinstance(first.provisioner, DockerProvisioner)
    try:
        placement = first.provisioner.placement()
        assert placement is not None and placement["gpus"], placement
        # The server is gone; a new kernel manager takes the kernel back from the record.
        second, provisioner, record = await reloaded(first)
        assert record["kind"] == "swarm" and record["service"]["node_name"] == placement["node"]

        assert provisioner.has_process
        assert await provisioner.poll() is None  # running, not "exited (0)"
        assert await second.is_alive()
        assert provisioner.placement() == placement
        assert provisioner.runtime is not None and provisioner.runtime.record() == record

        reply = await run_until_interrupted(second)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        assert await provisioner.poll() is None  # an interrupt is no death

        await second.shutdown_kernel()
        await eventually(lambda: not kernel_services(swarm, kernel_id), 60, "service removed")
        await eventually(lambda: not kernel_secrets(swarm, kernel_id), 60, "secret removed")
        assert await first.provisioner.poll() == -1  # the first manager sees it gone too
    finally:
        await first.provisioner.cleanup()
        services.stop()
        for child in notebook_dir.iterdir():
            child.unlink()
        notebook_dir.rmdir()
