"""Kernels on a real JupyterHub through the gpuenv broker, for real system users.

Each user starts container kernels the way JupyterLab does (their single-user server's
REST API and kernel websocket, with their own Hub token); the kernels run as their own
uid in their own folder, and the accounts themselves never reach Docker. (The Hub, the
accounts and the broker's rules: conftest.py.)
"""

from __future__ import annotations

import json
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.environments.model import environment_id
from jupyter_gpuenv.provisioning.container.request import CONNECTION_FILE_IN_CONTAINER
from tests.broker.accounts import groups_of
from tests.broker.conftest import ALICE, BOB, CAROL, GROUP, GROUP_DATA
from tests.broker.hub_broker import DOCKER_SOCKET, BrokerHub
from tests.broker.user_calls import (
    broker_environments,
    containers_of_kernel,
    gone,
    kernel_name,
    kernelspecs,
    refusal,
    shut_down,
    start,
    start_kernel_body,
    started,
    user_containers,
)
from tests.hub.hub_runner import execute, wait_for

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(1200)]


# -- the accounts never reach Docker ----------------------------------------------------


@pytest.mark.parametrize("name", [ALICE, BOB])
def test_users_cannot_use_the_docker_socket(broker_hub: BrokerHub, name: str) -> None:
    assert DOCKER_SOCKET.exists()
    assert "docker" not in groups_of(name)
    connect = broker_hub.run_as(
        name,
        [
            "/usr/bin/python3",
            "-c",
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            f"s.connect({str(DOCKER_SOCKET)!r})\n",
        ],
    )
    assert connect.returncode != 0
    assert "PermissionError: [Errno 13] Permission denied" in connect.stderr, connect.stderr
    cli = broker_hub.run_as(name, ["docker", "ps"])
    assert cli.returncode != 0
    assert "permission denied" in cli.stderr, cli.stderr


def test_each_users_server_runs_as_that_user(broker_hub: BrokerHub) -> None:
    for name in (ALICE, BOB):  # (Carol's server runs only for the culling test)
        account = broker_hub.accounts[name]
        pid = broker_hub.server_pid(name)
        assert pid is not None, f"no jupyterhub.singleuser process of uid {account.uid}"
        status = open(f"/proc/{pid}/status").read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(account.uid)] * 4, uid_line
        groups_line = next(line for line in status.splitlines() if line.startswith("Groups:"))
        docker_gid = DOCKER_SOCKET.stat().st_gid
        assert str(docker_gid) not in groups_line.split()[1:], groups_line


def test_a_user_who_reconfigures_their_server_around_the_broker_still_has_no_docker(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, python_kernel_image: str
) -> None:
    """Their own ~/.jupyter config turns broker mode off and names an image; their own
    kernelspec asks for it. The server then talks to Docker as them: refused by the socket."""
    config = (
        'c.GpuEnv.broker_url = ""\n'
        "c.GpuEnv.restrict_to_configured_images = False\n"
        f"c.GpuEnv.docker_images = {{'mine': {python_kernel_image!r}}}\n"
    )
    folder = broker_hub.home(CAROL) / ".jupyter"
    done = broker_hub.run_as(
        CAROL,
        ["sh", "-c", f'mkdir -p "{folder}" && cat > "{folder}/jupyter_server_config.py"'],
        input=config,
    )
    assert done.returncode == 0, done.stderr
    broker_hub.write_kernelspec_as(
        CAROL, "around-the-broker", {"environment_id": environment_id("docker", "mine", "mine")}
    )
    broker_hub.start_server(CAROL)
    try:
        reply = start(broker_hub, CAROL, "around-the-broker")
        assert reply.status_code != 201, reply.text
        message = reply.json()["message"]
        assert f"Docker daemon is not reachable at unix://{DOCKER_SOCKET}" in message, message
        assert "Permission denied" in message, message
        assert user_containers(docker_client, CAROL) == []
    finally:
        broker_hub.stop_server(CAROL)
        broker_hub.run_as(CAROL, ["rm", "-r", str(folder)])


# -- identity and the catalog come from the Hub and the admin ---------------------------


def test_whoami_is_the_hub_user_whatever_the_request_says(broker_hub: BrokerHub) -> None:
    forged = {"X-Forwarded-User": BOB, "X-Remote-User": BOB, "KERNEL_USERNAME": BOB}
    reply = broker_hub.broker(
        "GET", f"api/whoami?user={BOB}", broker_hub.tokens[ALICE], headers=forged
    )
    assert reply.status_code == 200, reply.text
    me = reply.json()
    alice = broker_hub.accounts[ALICE]
    assert (me["name"], me["uid"], me["gid"]) == (ALICE, alice.uid, alice.gid), me
    assert me["groups"] == [GROUP]
    assert me["policy"]["max_kernels"] == 3 and me["policy"]["max_gpus"] == 1, me
    assert sorted(me["policy"]["environments"]) == ["gpu", "python", "vision"], me

    reply = broker_hub.broker("GET", "api/whoami", broker_hub.tokens[BOB])
    bob = reply.json()
    assert (bob["name"], bob["groups"]) == (BOB, []), bob
    assert bob["policy"]["max_kernels"] == 2 and bob["policy"]["max_gpus"] == 0, bob
    assert bob["policy"]["environments"] == ["python"], bob


def test_each_user_sees_only_the_environments_allowed_to_them(broker_hub: BrokerHub) -> None:
    alice, bob = broker_environments(broker_hub, ALICE), broker_environments(broker_hub, BOB)
    assert sorted(alice) == ["gpu", "python", "vision"], alice
    assert sorted(bob) == ["python"], bob
    # The servers show the same: Alice's has a kernelspec for vision, Bob's has none.
    kernel_name(broker_hub, ALICE, "vision")
    vision_id = alice["vision"]["id"]
    for spec in kernelspecs(broker_hub, BOB).values():
        gpuenv = spec["spec"].get("metadata", {}).get("gpuenv") or {}
        assert gpuenv.get("environment_id") != vision_id, spec


# -- kernels work for each user, as that user -------------------------------------------


@pytest.mark.parametrize("name", [ALICE, BOB])
def test_kernel_runs_as_the_user_in_their_home(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, name: str, no_leftovers: Any
) -> None:
    account = broker_hub.accounts[name]
    kernel_id = started(broker_hub, name, kernel_name(broker_hub, name, "python"))
    marker = f"written-by-kernel-{secrets.token_hex(4)}.txt"
    out = execute(
        broker_hub,
        name,
        kernel_id,
        "import os\n"
        "print(os.getuid(), os.getgid(), os.getcwd())\n"
        f"open({marker!r}, 'w').write('hello')\n"
        f"print(os.path.exists({str(DOCKER_SOCKET)!r}))\n",
    )
    assert out.split() == [str(account.uid), str(account.gid), str(account.home), "False"], out
    written = account.home / marker
    assert written.read_text() == "hello"
    assert (written.stat().st_uid, written.stat().st_gid) == (account.uid, account.gid)

    (container,) = containers_of_kernel(docker_client, kernel_id)
    assert container.labels[labels.USER] == name
    assert container.attrs["Config"]["User"] == f"{account.uid}:{account.gid}"
    host = container.attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["Memory"] == 1024**3  # the default rule's mem_limit
    assert not any(m["Source"] == str(DOCKER_SOCKET) for m in container.attrs["Mounts"])

    shut_down(broker_hub, name, kernel_id)
    gone(docker_client, kernel_id)


def test_interrupt_and_restart_work_in_broker_mode(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    kernel_id = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "python"))
    (before,) = containers_of_kernel(docker_client, kernel_id)
    marker = broker_hub.home(ALICE) / f"sleeping-{secrets.token_hex(4)}"
    code = f"kept = 1\nopen({str(marker)!r}, 'w').close()\nimport time; time.sleep(150)"
    with ThreadPoolExecutor(1) as pool:
        sleeping = pool.submit(execute, broker_hub, ALICE, kernel_id, code, 170)
        wait_for("the cell running", marker.exists, 60)
        reply = broker_hub.user_request(ALICE, "POST", f"/api/kernels/{kernel_id}/interrupt")
        assert reply.status_code == 204, reply.text
        with pytest.raises(AssertionError, match="KeyboardInterrupt"):
            sleeping.result(timeout=120)
    assert execute(broker_hub, ALICE, kernel_id, "print(kept)").strip() == "1"

    reply = broker_hub.user_request(ALICE, "POST", f"/api/kernels/{kernel_id}/restart")
    assert reply.status_code == 200, reply.text
    assert execute(broker_hub, ALICE, kernel_id, "print('kept' in globals())").strip() == "False"
    (after,) = containers_of_kernel(docker_client, kernel_id)
    assert after.id != before.id and after.labels[labels.USER] == ALICE
    account = broker_hub.accounts[ALICE]
    assert after.attrs["Config"]["User"] == f"{account.uid}:{account.gid}"
    shut_down(broker_hub, ALICE, kernel_id)


def test_the_server_shows_the_panel_rest_and_gpuinfo_as_in_single_user_mode(
    broker_hub: BrokerHub, no_leftovers: Any
) -> None:
    envs = broker_hub.user_request(ALICE, "GET", "/gpuenv/api/environments")
    assert envs.status_code == 200, envs.text
    listed = {e["name"]: e for e in envs.json()["environments"]}
    assert sorted(listed) == ["gpu", "python", "vision"], listed
    assert listed["python"]["kind"] == "docker" and listed["python"]["problems"] == []
    for name in (ALICE, BOB):
        gpus = broker_hub.user_request(name, "GET", "/gpuenv/api/gpus")
        assert gpus.status_code == 200, gpus.text
        assert gpus.json()["available"] is False, gpus.text  # no GPU on this host
        direct = broker_hub.broker("GET", "api/gpus", broker_hub.tokens[name])
        assert direct.status_code == 200 and direct.json()["available"] is False, direct.text
    kernel_id = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "python"))
    out = execute(
        broker_hub, ALICE, kernel_id, "info = %gpuinfo --json\nimport json; print(json.dumps(info))"
    )
    info = json.loads(out)
    assert info["available"] is False and info["devices"] == [], info
    assert info["pid"] > 0, info
    shut_down(broker_hub, ALICE, kernel_id)


def test_a_kernels_connection_file_is_not_readable_by_another_user(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    """Its key lets anyone run code in the kernel (its ports are on the host's 127.0.0.1)."""
    kernel_id = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "python"))
    (container,) = containers_of_kernel(docker_client, kernel_id)
    (source,) = [
        m["Source"]
        for m in container.attrs["Mounts"]
        if m["Destination"] == CONNECTION_FILE_IN_CONTAINER
    ]
    theirs = broker_hub.run_as(BOB, ["cat", source])
    assert theirs.returncode != 0 and "Permission denied" in theirs.stderr, theirs
    assert theirs.stdout == ""
    shut_down(broker_hub, ALICE, kernel_id)


# Run as Alice: subscribe to a kernel's IOPub port on 127.0.0.1 (host network) and say
# what arrives within a few seconds. PUB/SUB needs no key: only CurveZMQ keeps her out.
SNOOP = """
import sys, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.setsockopt(zmq.LINGER, 0)
sub.connect(f"tcp://127.0.0.1:{sys.argv[1]}")
frames = []
poller = zmq.Poller()
poller.register(sub, zmq.POLLIN)
for _ in range(16):
    if poller.poll(500):
        frames += sub.recv_multipart()
print(len(frames), any(b"SECRET" in f for f in frames))
"""


def overheard(broker_hub: BrokerHub, iopub_port: int, run: Any, stop: Path) -> tuple[str, str]:
    """Alice's SNOOP on ``iopub_port`` while ``run()`` has Bob's kernel print a secret
    until ``stop`` exists: (what SNOOP printed, what the kernel printed)."""
    with ThreadPoolExecutor(1) as pool:
        printing = pool.submit(run)
        snoop = broker_hub.run_as(ALICE, [sys.executable, "-c", SNOOP, str(iopub_port)])
        stop.touch()
        printed = printing.result(timeout=180)
    assert snoop.returncode == 0, snoop.stderr
    return snoop.stdout, printed


def secret_loop(stop: Path) -> str:
    """Print a secret every half second until ``stop`` exists (at most 2 minutes)."""
    return (
        "import os, time\n"
        "for i in range(240):\n"
        f"    if os.path.exists({str(stop)!r}): break\n"
        "    print('SECRET', i, flush=True); time.sleep(0.5)\n"
    )


def test_another_users_kernel_output_cannot_be_overheard(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    """Kernels listen on the host's 127.0.0.1, where every account can connect; their
    channels are encrypted (CurveZMQ), so Alice hears nothing of Bob's kernel."""
    home = broker_hub.home(BOB)
    bobs = started(broker_hub, BOB, kernel_name(broker_hub, BOB, "python"))
    (connection_file,) = home.glob(f".local/share/jupyter/runtime/*{bobs}*.json")
    connection = json.loads(connection_file.read_text())
    assert connection.get("curve_publickey"), sorted(connection)
    stop = home / f"stop-{secrets.token_hex(4)}"
    heard, printed = overheard(
        broker_hub,
        connection["iopub_port"],
        lambda: execute(broker_hub, BOB, bobs, secret_loop(stop), 180),
        stop,
    )
    assert "SECRET" in printed  # Bob's kernel was publishing while Alice listened
    assert heard.split() == ["0", "False"], heard
    shut_down(broker_hub, BOB, bobs)

    # Switching encryption off is refused (c.GpuEnvBroker.require_encryption), both as
    # the server's request and sent to the broker directly.
    env_id = broker_environments(broker_hub, BOB)["python"]["id"]
    body = start_kernel_body(env_id, str(home), transport_encryption="disabled")
    reply = broker_hub.broker("POST", "api/kernels", broker_hub.tokens[BOB], json=body)
    assert reply.status_code == 403, reply.text
    assert "Unencrypted kernels are not allowed" in reply.json()["message"]
    assert not user_containers(docker_client, BOB)


def test_group_mount_is_there_read_only_for_the_group_only(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, no_leftovers: Any
) -> None:
    kernel_id = started(broker_hub, ALICE, kernel_name(broker_hub, ALICE, "vision"))
    out = execute(
        broker_hub,
        ALICE,
        kernel_id,
        f"print(open('/data/{GROUP}/{GROUP_DATA}').read().strip())\n"
        "try:\n"
        f"    open('/data/{GROUP}/mine.txt', 'w')\n"
        "except OSError as err:\n"
        "    print(type(err).__name__, err.errno)\n",
    )
    assert out.splitlines() == [f"data of the {GROUP} group", "OSError 30"], out  # EROFS
    shut_down(broker_hub, ALICE, kernel_id)

    # Bob is not in the group: asking the broker for that environment is refused.
    vision_id = broker_environments(broker_hub, ALICE)["vision"]["id"]
    reply = broker_hub.broker(
        "POST",
        "api/kernels",
        broker_hub.tokens[BOB],
        json=start_kernel_body(vision_id, str(broker_hub.home(BOB))),
    )
    message = refusal(reply, 403)
    assert "not among the environments you may use (python)" in message, message
    assert user_containers(docker_client, BOB) == []
