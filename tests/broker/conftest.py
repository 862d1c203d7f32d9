"""One real JupyterHub with the kernel broker and two real accounts, for the whole folder
(session-scoped: built once, torn down with everything it started).

Alice is in the Hub group ``vision`` (two more environments, one of them with GPUs, the
group's data folder mounted read-only, a GPU quota of 1) and may run 3 kernels at once;
Bob gets the default rule (one environment, 2 kernels, no GPUs). Neither account is in
the docker group.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.broker.hub_broker import BrokerHub
from tests.broker.user_calls import server_kernel_ids, shut_down, user_containers
from tests.hub.hub_runner import HubUnavailable, wait_for
from tests.support.docker_engine import running_in_ci

SUFFIX = secrets.token_hex(3)
ALICE, BOB = f"brkalice{SUFFIX}", f"brkbob{SUFFIX}"
# Default rules; her server culls idle kernels (started only by the culling test).
CAROL = f"brkcarol{SUFFIX}"
CULLING = """c.MappingKernelManager.cull_idle_timeout = 4
c.MappingKernelManager.cull_interval = 2
"""
GROUP = "vision"
GROUP_DATA = "readme.txt"

BROKER_CONFIG = """# The broker's configuration (the admin's): catalog and policy.
c.GpuEnv.docker_images = {{
    "python": {{"image": {image!r}, "gpus": "none"}},
    "vision": {{"image": {vision_image!r}, "gpus": "none"}},
    "gpu": {{"image": {image!r}, "gpus": "all"}},
}}
c.GpuEnv.kernel_start_timeout = 180
c.GpuEnvBroker.default_policy = {{
    "environments": ["python"],
    "max_kernels": 2,
    "max_gpus": 0,
    "notebook_roots": ["{{home}}"],
    "mounts": [],
    "mem_limit": "1g",
}}
c.GpuEnvBroker.group_policies = {{
    "vision": {{
        "environments": ["vision", "gpu"],
        "mounts": ["{data}/{{group}}:/data/{{group}}:ro"],
        "max_gpus": 1,
    }},
}}
c.GpuEnvBroker.user_policies = {{{alice!r}: {{"max_kernels": 3}}}}
c.GpuEnvBroker.kernel_ip = "127.0.0.1"
c.GpuEnvBroker.server_check_interval = 2.0
c.GpuEnvBroker.hub_cache_seconds = {cache_seconds!r}
"""
# How long the broker takes the Hub's word (a running server, a token) without asking.
HUB_CACHE_SECONDS = 1.0


@pytest.fixture(scope="session")
def vision_image(docker_client: docker.DockerClient, python_kernel_image: str) -> Iterator[str]:
    """The group's image: the kernel image under a name of its own (a tag, no build)."""
    repository, tag = "gpuenv-test/broker-vision", SUFFIX
    assert docker_client.images.get(python_kernel_image).tag(repository, tag)
    yield f"{repository}:{tag}"
    docker_client.images.remove(f"{repository}:{tag}")


@pytest.fixture(scope="session")
def broker_hub(
    docker_client: docker.DockerClient, python_kernel_image: str, vision_image: str
) -> Iterator[BrokerHub]:
    """The Hub, started once: everyone logged in, Alice's and Bob's servers running (Carol's
    only while a test needs it)."""
    root = Path(tempfile.mkdtemp(prefix="gpuenv-brokerhub-", dir="/tmp"))
    root.chmod(0o755)
    data = root / "data"
    (data / GROUP).mkdir(parents=True, mode=0o755)
    (data / GROUP / GROUP_DATA).write_text(f"data of the {GROUP} group\n")
    for folder in (data, data / GROUP):
        folder.chmod(0o755)
    config = BROKER_CONFIG.format(
        image=python_kernel_image,
        vision_image=vision_image,
        data=str(data),
        alice=ALICE,
        cache_seconds=HUB_CACHE_SECONDS,
    )
    hub: BrokerHub | None = None
    try:
        try:
            hub = BrokerHub(root, [ALICE, BOB, CAROL], {GROUP: [ALICE]}, config, {CAROL: CULLING})
            hub.start()
        except HubUnavailable as err:
            if running_in_ci():
                pytest.fail(f"CI must run the broker's Hub tests: {err}")
            pytest.skip(str(err))
        for name in (ALICE, BOB, CAROL):
            hub.login(name)
        for name in (ALICE, BOB):
            hub.start_server(name)
        yield hub
    finally:
        if hub is not None:
            hub.stop()
        for name in (ALICE, BOB, CAROL):  # only this run's users (random names)
            for container in user_containers(docker_client, name):
                container.remove(force=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def no_leftovers(broker_hub: BrokerHub, docker_client: docker.DockerClient) -> Iterator[None]:
    """After the test: none of the users has a kernel left (each test shuts its own down)."""
    yield
    for name in (ALICE, BOB):
        for kernel_id in server_kernel_ids(broker_hub, name):
            shut_down(broker_hub, name, kernel_id)
        wait_for(
            f"{name}'s containers removed", lambda n=name: not user_containers(docker_client, n), 60
        )
