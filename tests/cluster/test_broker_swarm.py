"""The kernel broker in swarm mode: a Hub user's kernels as services on the 3-node swarm.

The broker is handed its caller as the Hub would name it (the Hub's part is
tests/broker/test_broker_hub.py). The service runs as the user's uid:gid in their folder
on whichever node Swarm picks, with the GPU Swarm assigned; the quota counts those GPUs;
a restarted broker takes the service back; stopping removes service and secret.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.broker.kernel_record import Conflict
from jupyter_gpuenv.broker.kernels import KernelBroker
from jupyter_gpuenv.broker.rules import HubUser
from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.errors import PolicyViolation
from jupyter_gpuenv.provisioning.container import orphans
from jupyter_gpuenv.provisioning.container.swarm.engine_privileges import (
    gives_no_new_privileges,
)
from jupyter_gpuenv.services import Services
from tests.provisioning.server_process import make_shared_dir
from tests.support.docker_engine import running_in_ci
from tests.support.kernel_calls import run_code
from tests.support.swarm import GPU_ENV, OLD_ENGINE_OPT_OUT, SwarmCluster
from tests.support.system_user import SystemUser, UserUnavailable, system_user

pytestmark = [pytest.mark.swarm, pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def account() -> Iterator[SystemUser]:
    try:
        with system_user("gpuenvbrs", system=False) as user:
            yield user
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the broker tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def home(account: SystemUser) -> Iterator[Path]:
    root = make_shared_dir("gpuenv-broker-swarm-", None, None)
    folder = root / account.name
    folder.mkdir(mode=0o700)
    os.chown(folder, account.uid, account.gid)
    yield folder
    for path in sorted(root.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    root.rmdir()


def swarm_broker(swarm: SwarmCluster, image: str, **settings: Any) -> KernelBroker:
    """A broker in swarm mode on the test swarm; ``settings`` are more of c.GpuEnv."""
    orphans.use_instance_id(f"gpuenv-broker-swarm-{secrets.token_hex(4)}")
    config = GpuEnv()
    config.scheduler = "swarm"
    config.docker_host = swarm.manager_url
    config.docker_images = {"py": {"image": image, "gpus": 1}}
    config.restrict_to_configured_images = True
    config.kernel_start_timeout = 120
    config.gpu_wait_timeout = 20
    for name, value in settings.items():
        setattr(config, name, value)
    services = Services.build(config, cache_path=None)
    rules = {"default": {"environments": ["py"], "max_kernels": 3, "max_gpus": 1}}
    return KernelBroker(config, services, rules)


@pytest.fixture
async def broker(swarm: SwarmCluster, python_kernel_image: str) -> AsyncIterator[KernelBroker]:
    broker = swarm_broker(swarm, python_kernel_image, **OLD_ENGINE_OPT_OUT)
    yield broker
    for kernel in list(broker.kernels.values()):
        await broker.stop(kernel)
    broker.services.stop()


def start_body(broker: KernelBroker, **extra: Any) -> dict[str, Any]:
    (env,) = [e for e in broker.services.catalog.list_environments_sync() if e.name == "py"]
    return {
        "kernel_id": str(uuid.uuid4()),
        "environment_id": env.id,
        "key": secrets.token_hex(16),
        **extra,
    }


async def test_a_users_swarm_kernel_runs_as_them_with_a_gpu_of_its_node(
    broker: KernelBroker, swarm: SwarmCluster, account: SystemUser, home: Path
) -> None:
    user = HubUser(account.name, (), account.uid, account.gid, str(home))
    answer = await broker.start(user, start_body(broker, cwd=str(home)))
    kernel = answer["kernel"]
    placement = kernel["placement"]
    assert placement["node"] and placement["node_addr"] == answer["connection"]["ip"]
    assert len(kernel["gpus"]) == 1 and kernel["gpus"] == placement["gpus"]
    code = f"import os; print(os.getuid(), os.getgid(), os.getcwd(), os.environ['{GPU_ENV}'])"
    out = (await asyncio.to_thread(run_code, answer["connection"], code)).split()
    assert out == [str(account.uid), str(account.gid), str(home), kernel["gpus"][0]]

    # The quota counts the GPU Swarm gave it.
    with pytest.raises(PolicyViolation, match="your kernels use 1"):
        await broker.start(user, start_body(broker))
    record = broker.of(user.name, kernel["kernel_id"])
    assert (await broker.state(record))["Running"]
    with pytest.raises(Conflict, match="control channel"):
        await broker.signal(record, "SIGINT")

    # A restarted broker takes the service back, with its node and GPU.
    again = KernelBroker(broker.config, broker.services, broker.rules)
    assert await again.reattach() == 1
    taken_back = again.of(user.name, kernel["kernel_id"])
    assert taken_back.runtime.placement() is not None
    assert taken_back.runtime.placement()["node"] == placement["node"]
    assert taken_back.gpus == kernel["gpus"]
    await again.stop(taken_back)
    broker.kernels.clear()
    owned = {"label": f"{labels.KERNEL_ID}={kernel['kernel_id']}"}
    assert swarm.manager.api.services(filters=owned) == []
    assert swarm.manager.api.secrets(filters=owned) == []


async def test_the_broker_refuses_swarm_kernels_on_an_engine_older_than_25(
    swarm: SwarmCluster, python_kernel_image: str, account: SystemUser, home: Path
) -> None:
    """The admin did not allow old engines: refused before any secret or service."""
    api_version = swarm.manager.api.api_version
    if gives_no_new_privileges(api_version):
        pytest.skip(f"the swarm's engine (API {api_version}) gives services no-new-privileges")
    broker = swarm_broker(swarm, python_kernel_image)
    user = HubUser(account.name, (), account.uid, account.gid, str(home))
    body = start_body(broker, cwd=str(home))
    try:
        with pytest.raises(PolicyViolation) as refused:
            await broker.start(user, body)
    finally:
        broker.services.stop()
    message = str(refused.value)
    engine = swarm.manager.version()["Version"]
    assert f"Docker Engine {engine} (API {api_version})" in message, message
    assert "Docker Engine 25.0 (API 1.44)" in message, message
    assert "c.GpuEnv.swarm_allow_old_engine = True" in message, message
    assert broker.kernels == {}
    owned = {"label": f"{labels.KERNEL_ID}={body['kernel_id']}"}
    assert swarm.manager.api.services(filters=owned) == []
    assert swarm.manager.api.secrets(filters=owned) == []
