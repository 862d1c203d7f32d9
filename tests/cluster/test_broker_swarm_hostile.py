"""A hostile Hub user against the kernel broker in swarm mode, through their own server.

A real JupyterHub (tests/broker/hub_broker.py) whose broker runs kernels as services on
the 3-node test swarm; the user is a non-root account whose single-user server (running
as them, broker mode) reads kernelspecs they wrote in their home. What they ask for,
through that server or sent to the broker with their own token, is refused with a
message naming it, and the swarm's manager holds no service and no secret afterwards. A
plain start through the same server works, so the refusals are the policy's, not a
broken set-up's; "gpus": "all" is no widening (every GPU the kernel may have): it gets
the rules' one.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.docker import labels
from tests.broker.hub_broker import BrokerHub
from tests.broker.user_calls import (
    broker_environments,
    kernel_name,
    kernelspecs,
    refusal,
    server_kernel_ids,
    shut_down,
    start,
    start_kernel_body,
    started,
)
from tests.hub.hub_runner import HubUnavailable, wait_for
from tests.support.docker_engine import running_in_ci
from tests.support.swarm import GPU_KIND, OLD_ENGINE_OPT_OUT, SwarmCluster

pytestmark = [pytest.mark.swarm, pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(900)]

SUFFIX = secrets.token_hex(3)
MALLORY, VICTOR = f"swmal{SUFFIX}", f"swvic{SUFFIX}"

BROKER_CONFIG = """# The broker's configuration (the admin's): swarm mode, one GPU environment.
c.GpuEnv.scheduler = "swarm"
c.GpuEnv.docker_host = {manager!r}
c.GpuEnv.swarm_allow_old_engine = {allow_old!r}
c.GpuEnv.docker_images = {{"py": {{"image": {image!r}, "gpus": 1}}}}
c.GpuEnv.kernel_start_timeout = 180
c.GpuEnv.gpu_wait_timeout = 20
c.GpuEnvBroker.default_policy = {{
    "environments": ["py"],
    "max_kernels": 2,
    "max_gpus": 1,
    "notebook_roots": ["{{home}}"],
    "mounts": [],
}}
"""

# (kernelspec name, what the user's kernelspec or request asks for, what the refusal names)
HOSTILE = [
    (
        "swarm-gpus-variable",
        {"environment": {"DOCKER_RESOURCE_NVIDIA-GPU": "all"}},
        ["DOCKER_RESOURCE_NVIDIA-GPU"],
    ),
    ("nvidia-variable", {"environment": {"NVIDIA_VISIBLE_DEVICES": "all"}}, ["NVIDIA_VISIBLE"]),
    ("preload", {"environment": {"LD_PRELOAD": "/tmp/evil.so"}}, ["LD_PRELOAD"]),
    ("a-gpu-by-id", {"gpus": ["GPU-swarm-n1-0"]}, ["GPU-swarm-n1-0"]),
    ("host-mount", {"mounts": ["/:/host"]}, ["extra mounts (mounts=['/:/host'])"]),
    ("root", {"user": "0:0"}, ["user '0:0' is uid 0"]),
]


@pytest.fixture(scope="module")
def swarm_hub(swarm_cluster: SwarmCluster, python_kernel_image: str) -> Iterator[BrokerHub]:
    """The Hub with the swarm broker; Mallory's and Victor's servers running."""
    root = Path(tempfile.mkdtemp(prefix="gpuenv-swarmhub-", dir="/tmp"))
    config = BROKER_CONFIG.format(
        manager=swarm_cluster.manager_url,
        allow_old=OLD_ENGINE_OPT_OUT["swarm_allow_old_engine"],
        image=python_kernel_image,
    )
    hub: BrokerHub | None = None
    try:
        try:
            hub = BrokerHub(root, [MALLORY, VICTOR], {}, config)
            hub.start()
        except HubUnavailable as err:
            if running_in_ci():
                pytest.fail(f"CI must run the swarm broker's Hub tests: {err}")
            pytest.skip(str(err))
        for name in (MALLORY, VICTOR):
            hub.login(name)
            hub.start_server(name)
        yield hub
    finally:
        if hub is not None:
            hub.stop()
        swarm_cluster.cleanup_services()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def mallorys_kernels_go(swarm_hub: BrokerHub, swarm: SwarmCluster) -> Iterator[None]:
    """After each test, whatever it left of Mallory's goes, so one failure stays one."""
    yield
    for kernel_id in server_kernel_ids(swarm_hub, MALLORY):
        shut_down(swarm_hub, MALLORY, kernel_id)
    wait_for("Mallory's services removed", lambda: not on_the_swarm(swarm, MALLORY)[0], 60)
    for secret in on_the_swarm(swarm, MALLORY)[1]:
        swarm.manager.api.remove_secret(secret["ID"])


def on_the_swarm(swarm: SwarmCluster, name: str) -> tuple[list[Any], list[Any]]:
    """The user's kernel services and secrets, as the manager lists them."""
    owned = {"label": f"{labels.USER}={name}"}
    return swarm.manager.api.services(filters=owned), swarm.manager.api.secrets(filters=owned)


def nothing_left(swarm: SwarmCluster, hub: BrokerHub, name: str) -> None:
    assert on_the_swarm(swarm, name) == ([], [])
    assert swarm.manager.api.services(filters={"label": f"{labels.ROLE}=kernel"}) == []
    assert server_kernel_ids(hub, name) == []


@pytest.mark.parametrize(("spec_name", "asked", "named"), HOSTILE)
@pytest.mark.parametrize("via", ["kernelspec", "broker"])
def test_what_a_hostile_user_asks_the_swarm_broker_for_is_refused(
    swarm_hub: BrokerHub,
    swarm: SwarmCluster,
    via: str,
    spec_name: str,
    asked: dict[str, Any],
    named: list[str],
) -> None:
    """Their own kernelspec, started through their server; or the same settings sent to
    the broker straight away (the server's own checks bypassed)."""
    env_id = broker_environments(swarm_hub, MALLORY)["py"]["id"]
    if via == "kernelspec":
        swarm_hub.write_kernelspec_as(MALLORY, spec_name, {"environment_id": env_id, **asked})
        assert spec_name in kernelspecs(swarm_hub, MALLORY)  # the server does see it
        reply = start(swarm_hub, MALLORY, spec_name)
    else:
        body = start_kernel_body(env_id, str(swarm_hub.home(MALLORY)), config=asked)
        reply = swarm_hub.broker("POST", "api/kernels", swarm_hub.tokens[MALLORY], json=body)
    message = refusal(reply, 403)
    for part in named:
        assert part in message, message
    nothing_left(swarm, swarm_hub, MALLORY)


def test_another_users_folder_is_refused_on_the_swarm(
    swarm_hub: BrokerHub, swarm: SwarmCluster
) -> None:
    victims_home = str(swarm_hub.home(VICTOR))
    env_id = broker_environments(swarm_hub, MALLORY)["py"]["id"]
    body = start_kernel_body(env_id, victims_home)
    reply = swarm_hub.broker("POST", "api/kernels", swarm_hub.tokens[MALLORY], json=body)
    assert f"{victims_home} is a folder you cannot open" in refusal(reply, 403)
    # Through her server: a path out of her home, and a link in her home to his.
    done = swarm_hub.run_as(MALLORY, ["ln", "-sfn", victims_home, "victims-home"])
    assert done.returncode == 0, done.stderr
    spec_name = kernel_name(swarm_hub, MALLORY, "py")
    for path in (f"../{VICTOR}", "victims-home"):
        message = refusal(start(swarm_hub, MALLORY, spec_name, path=path), 403)
        assert "a folder you cannot open" in message, message
    nothing_left(swarm, swarm_hub, MALLORY)


@pytest.mark.parametrize("asked", [{}, {"gpus": "all"}], ids=["plain", "every-gpu"])
def test_a_start_through_the_same_server_runs_as_the_user_with_the_rules_gpus(
    swarm_hub: BrokerHub, swarm: SwarmCluster, asked: dict[str, Any]
) -> None:
    """The environment's own kernelspec, and one of hers asking for "all" GPUs (every GPU
    the kernel may have: the rules' one, no more)."""
    if asked:
        env_id = broker_environments(swarm_hub, MALLORY)["py"]["id"]
        swarm_hub.write_kernelspec_as(MALLORY, "all-gpus", {"environment_id": env_id, **asked})
        spec_name = "all-gpus"
    else:
        spec_name = kernel_name(swarm_hub, MALLORY, "py")
    kernel_id = started(swarm_hub, MALLORY, spec_name)
    (service,), secrets_made = on_the_swarm(swarm, MALLORY)
    assert len(secrets_made) == 1
    template = service["Spec"]["TaskTemplate"]
    container = template["ContainerSpec"]
    account = swarm_hub.accounts[MALLORY]
    assert container["User"] == f"{account.uid}:{account.gid}"
    assert container["CapabilityDrop"] == ["ALL"]
    assert template["Resources"]["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": GPU_KIND, "Value": 1}}
    ]
    assert service["Spec"]["Labels"][labels.KERNEL_ID] == kernel_id
    shut_down(swarm_hub, MALLORY, kernel_id)
    wait_for("the service and secret removed", lambda: on_the_swarm(swarm, MALLORY) == ([], []), 60)
    nothing_left(swarm, swarm_hub, MALLORY)
