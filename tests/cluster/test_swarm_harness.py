"""The Swarm harness does what cluster-mode tests rely on: nodes, fake GPUs as generic
resources, scheduling by them, drain, missing images, host networking, and teardown."""

from __future__ import annotations

import io
import re
import tarfile
import time
import urllib.error
import urllib.request
import uuid

import docker
import pytest
from docker.types import ServiceMode

from tests.support import swarm as swarm_support
from tests.support.swarm import (
    GPU_ENV,
    GPU_KIND,
    NodeSpec,
    SwarmCluster,
    describe_task,
    gpu_layout,
)

pytestmark = [pytest.mark.swarm, pytest.mark.docker]

# Prints the GPU ids Swarm handed the task, then idles (Swarm stops it with SIGKILL).
PRINT_GPU = (
    "import os, sys, time\n"
    f"print('GPU=' + os.environ.get({GPU_ENV!r}, '-'), flush=True)\n"
    "time.sleep(3600)\n"
)
IDLE = ["python3", "-c", "import time; time.sleep(3600)"]


def gpu_from_logs(cluster: SwarmCluster, service) -> str:
    logs = cluster.wait_for_log(service, "GPU=")
    match = re.search(r"GPU=(\S+)", logs)
    assert match, logs
    return match.group(1)


def running_on(cluster: SwarmCluster, service) -> str:
    """Name of the node running the service's task."""
    task = cluster.wait_for_task(service, "running")
    return cluster.node(task["NodeID"]).name


def test_three_nodes_ready_joined_and_reachable(swarm: SwarmCluster, docker_client):
    nodes = {n.id: n.attrs for n in swarm.manager.nodes.list()}
    assert sorted(nodes) == sorted(node.node_id for node in swarm.nodes)
    for node in swarm.nodes:
        attrs = nodes[node.node_id]
        assert attrs["Status"]["State"] == "ready", attrs["Status"]
        assert attrs["Status"]["Addr"] == node.ip
        assert attrs["Spec"]["Availability"] == "active"
        assert attrs["Description"]["Hostname"] == node.hostname
        assert attrs["Spec"]["Labels"][swarm_support.NODE_LABEL] == node.name
        info = node.client.info()["Swarm"]
        assert (info["LocalNodeState"], info["NodeID"]) == ("active", node.node_id)
    roles = {swarm.node(i).name: a["Spec"]["Role"] for i, a in nodes.items()}
    assert roles == {"n1": "manager", "n2": "worker", "n3": "worker"}
    assert nodes[swarm.manager_node.node_id]["ManagerStatus"]["Leader"] is True
    assert len({node.ip for node in swarm.nodes}) == 3

    # What the package will do: talk to the manager through DOCKER_HOST.
    assert swarm.manager_url == f"unix://{swarm.manager_node.socket}"
    client = docker.DockerClient(base_url=swarm.manager_url)
    try:
        assert client.swarm.attrs["ID"] == swarm.manager.swarm.attrs["ID"]
    finally:
        client.close()
    # The nodes are engines of their own; the host's engine is no part of the swarm.
    assert [node.client.info()["DockerRootDir"] for node in swarm.nodes] == [
        str(node.data_root) for node in swarm.nodes
    ]
    assert docker_client.info()["Swarm"]["NodeID"] not in nodes


def test_fake_gpus_are_generic_resources_of_the_nodes(swarm: SwarmCluster):
    expected = {
        "n1": {"GPU-swarm-n1-0", "GPU-swarm-n1-1"},
        "n2": {"GPU-swarm-n2-0"},
        "n3": {"GPU-swarm-n3-0"},
    }
    for node in swarm.nodes:
        described = swarm.manager.nodes.get(node.node_id).attrs["Description"]["Resources"]
        advertised = {
            (item["NamedResourceSpec"]["Kind"], item["NamedResourceSpec"]["Value"])
            for item in described["GenericResources"]
        }
        assert advertised == {(GPU_KIND, gpu) for gpu in expected[node.name]}
        assert set(node.gpus) == expected[node.name]
    assert swarm.gpus == {gpu: name for name, gpus in expected.items() for gpu in gpus}


def test_gpu_reservations_get_distinct_gpus_then_queue(swarm: SwarmCluster, python_kernel_image):
    command = ["python3", "-c", PRINT_GPU]
    services = [swarm.run_service(python_kernel_image, command, gpus=1) for _ in range(4)]
    granted = {}
    for service in services:
        node = running_on(swarm, service)
        gpu = gpu_from_logs(swarm, service)
        assert swarm.gpus.get(gpu) == node, f"{service.name} got {gpu} on {node}"
        granted[service.name] = gpu
    assert sorted(granted.values()) == sorted(swarm.gpus), granted

    fifth = swarm.run_service(python_kernel_image, command, gpus=1)
    task = swarm.wait_for_task(
        fifth, lambda t: "insufficient resources" in t["Status"].get("Err", "")
    )
    assert task["Status"]["State"] == "pending", describe_task(task)
    time.sleep(2)
    task = swarm.latest_task(fifth)
    assert task["Status"]["State"] == "pending", describe_task(task)

    # Freeing n2's GPU lets the queued service run, on n2 and with that GPU.
    on_n2 = next(name for name, gpu in granted.items() if swarm.gpus[gpu] == "n2")
    assert swarm.cleanup_services(label="no-such-label") == []  # a filter spares the rest
    swarm.service(on_n2).remove()
    assert running_on(swarm, fifth) == "n2"
    assert gpu_from_logs(swarm, fifth) == granted[on_n2]


def test_drained_node_gets_no_tasks(swarm: SwarmCluster, python_kernel_image):
    swarm.drain("n2")
    assert swarm.availability("n2") == "drain"
    every_node = swarm.run_service(python_kernel_image, IDLE, mode=ServiceMode("global"))
    pinned = swarm.run_service(python_kernel_image, IDLE, node="n2")

    def nodes_running() -> set[str]:
        tasks = swarm.tasks(every_node)
        return {swarm.node(t["NodeID"]).name for t in tasks if t["Status"]["State"] == "running"}

    swarm.wait_for(lambda: nodes_running() == {"n1", "n3"}, 60, "global tasks on n1 and n3")
    task = swarm.wait_for_task(pinned, "pending")
    time.sleep(2)
    assert nodes_running() == {"n1", "n3"}
    assert swarm.latest_task(pinned)["Status"]["State"] == "pending", describe_task(task)
    assert swarm_support._running_containers(swarm.node("n2")) == []

    swarm.activate("n2")
    assert running_on(swarm, pinned) == "n2"
    swarm.wait_for(lambda: nodes_running() == {"n1", "n2", "n3"}, 60, "a global task on n2")


def test_image_missing_on_a_node_gives_a_readable_task_error(
    swarm: SwarmCluster, python_kernel_image
):
    only_on_n1 = f"gpuenv-test/swarm-only-on-n1:{uuid.uuid4().hex[:8]}"
    repository, tag = only_on_n1.split(":")
    n1 = swarm.node("n1")
    n1.client.images.get(python_kernel_image).tag(repository, tag)
    try:
        missing = swarm.run_service(only_on_n1, IDLE, node="n3")
        task = swarm.wait_for_task(missing, lambda t: t["Status"].get("Err"))
        assert task["Status"]["State"] in ("rejected", "failed"), describe_task(task)
        assert f"No such image: {only_on_n1}" in task["Status"]["Err"], describe_task(task)
        # The same reference runs where the image is.
        present = swarm.run_service(only_on_n1, IDLE, node="n1")
        assert running_on(swarm, present) == "n1"
    finally:
        swarm.cleanup_services()
        n1.client.images.remove(only_on_n1)


def test_host_network_service_is_reachable_from_the_root_namespace(
    swarm: SwarmCluster, python_kernel_image
):
    port = 18080
    mark = uuid.uuid4().hex
    serve = (
        'mkdir -p /tmp/www && printf %s "$MARK" > /tmp/www/mark && cd /tmp/www'
        f" && exec python3 -m http.server {port}"
    )
    service = swarm.run_service(
        python_kernel_image, ["sh", "-c", serve], node="n2", env={"MARK": mark}
    )
    assert running_on(swarm, service) == "n2"
    url = f"http://{swarm.node('n2').ip}:{port}/mark"

    def fetch() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return None

    assert swarm.wait_for(fetch, 30, f"an answer from {url}") == mark
    # Host networking is the node's namespace: the other nodes do not serve that port.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{swarm.node('n3').ip}:{port}/mark", timeout=5)


def tiny_image(client: docker.DockerClient, tag: str) -> str:
    """Import a one-file image into ``client``'s engine; return its id."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    repository, version = tag.split(":")
    client.api.import_image_from_data(data.getvalue(), repository=repository, tag=version)
    return client.images.get(tag).id


def test_a_second_layout_runs_beside_and_leaves_nothing_behind(
    swarm_cluster_factory, swarm_cluster: SwarmCluster, docker_client
):
    layout = [NodeSpec("a1", {GPU_KIND: ("GPU-a",), "FPGA": ("f0",)}, labels={"zone": "a"})]
    other = swarm_cluster_factory(layout)
    assert other.slot != swarm_cluster.slot
    assert [(n.name, n.gpus) for n in other.nodes] == [("a1", ("GPU-a",))]
    described = other.manager.nodes.get(other.nodes[0].node_id).attrs
    assert described["Spec"]["Labels"]["zone"] == "a"
    assert swarm_support._advertised_resources(described) == {(GPU_KIND, "GPU-a"), ("FPGA", "f0")}
    assert other.manager.swarm.attrs["ID"] != swarm_cluster.manager.swarm.attrs["ID"]
    # Images come in by `docker save` / `docker load` after the start, with their tag.
    tag = "gpuenv-test/swarm-tiny:1"
    image_id = tiny_image(docker_client, tag)
    try:
        with pytest.raises(docker.errors.ImageNotFound):
            other.manager.images.get(tag)
        other.load_image(tag)
        assert other.manager.images.get(tag).id == image_id
    finally:
        docker_client.images.remove(tag)
    assert swarm_support.leftovers(other.slot)  # it exists while it runs
    other.close()
    assert swarm_support.leftovers(other.slot) == []


def test_a_crashed_runs_leftovers_are_swept(swarm_cluster_factory):
    crashed = swarm_cluster_factory(gpu_layout(0))
    # Crash: the daemon dies and the slot is released, nothing else is cleaned up.
    crashed._closed = True
    crashed.manager_node.process.kill()
    crashed._slot_lock.close()
    assert any(item.startswith("netns") for item in swarm_support.leftovers(crashed.slot))
    outcome = swarm_support.sweep_leftovers()
    assert outcome[crashed.slot].startswith("swept"), outcome
    assert swarm_support.leftovers(crashed.slot) == []


def test_a_failed_bring_up_says_why_and_leaves_nothing_behind(swarm_machine, monkeypatch):
    slots = []
    acquire = swarm_support._acquire_slot

    def recording_acquire():
        slot, lock = acquire()
        slots.append(slot)
        return slot, lock

    def broken_form_swarm(cluster):
        raise RuntimeError("swarm init broke (injected)")

    monkeypatch.setattr(swarm_support, "_acquire_slot", recording_acquire)
    monkeypatch.setattr(swarm_support, "_form_swarm", broken_form_swarm)
    with pytest.raises(swarm_support.SwarmError) as failure:
        swarm_support.start_swarm_cluster(gpu_layout(1, 1), swarm_machine)
    message = str(failure.value)
    assert "swarm init broke (injected)" in message
    assert "n1 dockerd log" in message and "n2 dockerd log" in message
    assert "API listen on" in message  # the daemons' own lines
    assert swarm_support.leftovers(slots[0]) == []


def test_prerequisites_name_what_is_missing(monkeypatch):
    monkeypatch.setattr(swarm_support.os, "geteuid", lambda: 1000)
    with pytest.raises(swarm_support.SwarmUnavailable, match="need root"):
        swarm_support.check_prerequisites()
    monkeypatch.setattr(swarm_support.os, "geteuid", lambda: 0)
    real_which = swarm_support.shutil.which
    monkeypatch.setattr(
        swarm_support.shutil, "which", lambda cmd: None if cmd == "ip" else real_which(cmd)
    )
    if real_which("dockerd"):
        with pytest.raises(swarm_support.SwarmUnavailable, match="iproute2"):
            swarm_support.check_prerequisites(install=False)
