"""What a Hub user can write never widens the broker's policy.

Kernelspecs in their home (started through their server) and the same settings sent to
the broker directly ask for another image, host mounts, privileges, root or another uid,
extra groups, host namespaces or devices, another group's environment, another user's
folder, more GPUs or kernels than the quota: each is refused with a message naming it,
and no container is left.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import pytest

from tests.broker.conftest import ALICE, BOB
from tests.broker.hub_broker import DOCKER_SOCKET, BrokerHub
from tests.broker.user_calls import (
    broker_environments,
    gone,
    kernel_name,
    kernelspecs,
    refusal,
    server_kernel_ids,
    shut_down,
    start,
    start_kernel_body,
    started,
    user_containers,
)

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(1200)]

FORBIDDEN_IMAGE = "someone/else:latest"


UNSUPPORTED = "settings this provisioner does not support ("
REFUSALS = [
    (ALICE, "sneaky-image", {"image": FORBIDDEN_IMAGE}, [f"image {FORBIDDEN_IMAGE!r}"]),
    (
        BOB,
        "sneaky-group-image",
        {"image": "VISION"},
        ["image {VISION!r} (allowed images: {PYTHON})"],
    ),
    (ALICE, "sneaky-mount", {"mounts": ["/:/host"]}, ["extra mounts (mounts=['/:/host'])"]),
    (ALICE, "sneaky-volume", {"volumes": {"/": {"bind": "/host"}}}, [UNSUPPORTED + "volumes;"]),
    (ALICE, "sneaky-privileged", {"privileged": True}, [UNSUPPORTED + "privileged;"]),
    (ALICE, "sneaky-root", {"user": "0:0"}, ["user '0:0' is uid 0"]),
    (BOB, "sneaky-other-uid", {"user": "ALICE_UID"}, ["a different user (user="]),
    (BOB, "sneaky-docker-group", {"group_add": ["DOCKER_GID"]}, [UNSUPPORTED + "group_add;"]),
    (ALICE, "sneaky-caps", {"cap_add": ["SYS_ADMIN"]}, [UNSUPPORTED + "cap_add;"]),
    (ALICE, "sneaky-pid", {"pid_mode": "host"}, [UNSUPPORTED + "pid_mode;"]),
    (ALICE, "sneaky-userns", {"userns_mode": "host"}, [UNSUPPORTED + "userns_mode;"]),
    (ALICE, "sneaky-devices", {"devices": ["/dev/mem:/dev/mem"]}, [UNSUPPORTED + "devices;"]),
    (ALICE, "sneaky-memory", {"mem_limit": "100g"}, ["a different memory limit (mem_limit="]),
    (BOB, "sneaky-gpu", {"gpus": 1}, ["1 GPUs beyond the allowed GPUs (none)"]),
    (
        ALICE,
        "sneaky-gpus",
        {"gpus": 2, "environment": "gpu"},
        ["Quota: this kernel asks for 2 GPU(s)", "you may use 1 at once"],
    ),
]


def resolved(broker_hub: BrokerHub, images: dict[str, str], case: Any) -> Any:
    """A refusal case's settings with the run's images, uid and docker group."""
    placeholders = {
        **images,
        "ALICE_UID": str(broker_hub.accounts[ALICE].uid),
        "DOCKER_GID": str(DOCKER_SOCKET.stat().st_gid),
    }
    text = json.dumps(case)
    for name, value in placeholders.items():
        text = text.replace(f'"{name}"', json.dumps(value))
    return json.loads(text)


@pytest.mark.parametrize(("name", "spec_name", "extra", "named"), REFUSALS)
@pytest.mark.parametrize("via", ["kernelspec", "broker"])
def test_asking_for_more_than_the_policy_is_refused(
    broker_hub: BrokerHub,
    docker_client: docker.DockerClient,
    python_kernel_image: str,
    vision_image: str,
    via: str,
    name: str,
    spec_name: str,
    extra: dict[str, Any],
    named: list[str],
) -> None:
    """A kernelspec the user wrote, started through their server; or the same settings
    sent to the broker straight away (the server's checks bypassed)."""
    images = {"PYTHON": python_kernel_image, "VISION": vision_image}
    settings = dict(resolved(broker_hub, images, extra))
    named = [part.format(**images) for part in named]
    env_id = broker_environments(broker_hub, name)[settings.pop("environment", "python")]["id"]
    if via == "kernelspec":
        broker_hub.write_kernelspec_as(name, spec_name, {"environment_id": env_id, **settings})
        assert spec_name in kernelspecs(broker_hub, name)  # the server does see it
        reply = start(broker_hub, name, spec_name)
    else:
        body = start_kernel_body(env_id, str(broker_hub.home(name)), config=settings)
        reply = broker_hub.broker("POST", "api/kernels", broker_hub.tokens[name], json=body)
    message = refusal(reply, 403)
    assert "asks for more than the administrator allows" in message or "Quota" in message
    for part in named:
        assert part in message, message
    assert user_containers(docker_client, name) == []
    assert server_kernel_ids(broker_hub, name) == []


def test_user_kernelspec_naming_an_environment_of_another_group_is_refused(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    vision_id = broker_environments(broker_hub, ALICE)["vision"]["id"]
    broker_hub.write_kernelspec_as(BOB, "sneaky-group", {"environment_id": vision_id})
    message = refusal(start(broker_hub, BOB, "sneaky-group"), 403)
    assert "not among the environments you may use (python)" in message, message
    assert user_containers(docker_client, BOB) == []


def test_notebook_folder_of_another_user_is_refused(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    bob_home = str(broker_hub.home(BOB))
    env_id = broker_environments(broker_hub, ALICE)["python"]["id"]
    # Straight to the broker, with Bob's home as the notebook folder.
    reply = broker_hub.broker(
        "POST", "api/kernels", broker_hub.tokens[ALICE], json=start_kernel_body(env_id, bob_home)
    )
    message = refusal(reply, 403)
    assert f"{bob_home} is a folder you cannot open" in message, message
    # A folder she may open, outside her notebook roots.
    reply = broker_hub.broker(
        "POST", "api/kernels", broker_hub.tokens[ALICE], json=start_kernel_body(env_id, "/tmp")
    )
    message = refusal(reply, 403)
    assert "The notebook folder /tmp is outside the folders your kernels may use" in message
    # Through her server: a path leading out of her home, and a link in her home to his,
    # both resolved as she would resolve them.
    spec_name = kernel_name(broker_hub, ALICE, "python")
    done = broker_hub.run_as(ALICE, ["ln", "-s", bob_home, "bobs-home"])
    assert done.returncode == 0, done.stderr
    for path in (f"../{BOB}", "bobs-home"):
        message = refusal(start(broker_hub, ALICE, spec_name, path=path), 403)
        assert "a folder you cannot open" in message, message
    # Only what her server gave is named, never the path as root resolved the link.
    assert "bobs-home" in message and bob_home not in message, message
    assert user_containers(docker_client, ALICE) == []
    assert server_kernel_ids(broker_hub, ALICE) == []


def test_quota_counts_kernels_at_once(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    spec_name = kernel_name(broker_hub, BOB, "python")
    first, second = started(broker_hub, BOB, spec_name), started(broker_hub, BOB, spec_name)
    message = refusal(start(broker_hub, BOB, spec_name), 403)
    assert "Quota: you already run 2 kernel(s) and may run 2 at once" in message, message
    # Asking the broker directly instead of the server gets no further.
    env_id = broker_environments(broker_hub, BOB)["python"]["id"]
    reply = broker_hub.broker(
        "POST",
        "api/kernels",
        broker_hub.tokens[BOB],
        json=start_kernel_body(env_id, str(broker_hub.home(BOB))),
    )
    assert "Quota: you already run 2 kernel(s)" in refusal(reply, 403)
    assert len(user_containers(docker_client, BOB)) == 2
    # One shut down: room for one more.
    shut_down(broker_hub, BOB, first)
    gone(docker_client, first)
    third = started(broker_hub, BOB, spec_name)
    assert sorted(server_kernel_ids(broker_hub, BOB)) == sorted([second, third])


def test_starts_at_once_do_not_get_past_the_quota(
    broker_hub: BrokerHub, docker_client: docker.DockerClient
) -> None:
    """Four starts sent to the broker together, for a user who may run two kernels."""
    env_id = broker_environments(broker_hub, BOB)["python"]["id"]
    bodies = [start_kernel_body(env_id, str(broker_hub.home(BOB))) for _ in range(4)]

    def send(body: dict[str, Any]) -> Any:
        return broker_hub.broker("POST", "api/kernels", broker_hub.tokens[BOB], json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(send, bodies))
    try:
        admitted = [r for r in replies if r.status_code == 201]
        assert len(admitted) <= 2, [r.text for r in admitted]
        for reply in replies:
            if reply.status_code != 201:
                assert "Quota: you already run" in refusal(reply, 403)
        assert len(user_containers(docker_client, BOB)) == len(admitted)
    finally:
        for body in bodies:
            broker_hub.broker("DELETE", f"api/kernels/{body['kernel_id']}", broker_hub.tokens[BOB])
    assert user_containers(docker_client, BOB) == []
