"""Swarm mode's service spec: Docker mode's decisions (user, variables, mounts, limits,
labels) as a Swarm task, GPUs as a count reservation, the connection info as a secret,
no-new-privileges where the engine's API keeps it."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.gpu_set import GpuSet
from jupyter_gpuenv.provisioning.container.orphans import ServerInstance
from jupyter_gpuenv.provisioning.container.request import (
    CONNECTION_FILE_IN_CONTAINER,
    ContainerRequest,
)
from jupyter_gpuenv.provisioning.container.swarm.engine_privileges import (
    engine_is_new_enough,
    gives_no_new_privileges,
    old_nodes,
)
from jupyter_gpuenv.provisioning.container.swarm.service_spec import (
    PORT_NAMES,
    PORT_RANGE,
    PORTS_LABEL,
    ServiceRequest,
    connection_payload,
    pick_ports,
    ports_in_labels,
    service_labels,
    service_name,
    swarm_gpu_count,
    task_template,
)
from jupyter_gpuenv.provisioning.kernel_errors import KernelStartFailed
from tests.provisioning.server_process import make_shared_dir


@pytest.fixture
def notebook_dir():
    """A folder uid 4242 can enter (pytest's tmp_path lies under a 0700 one): the notebook
    folder is checked as the kernel's user."""
    path = make_shared_dir("gpuenv-swarm-spec-", None, None)
    yield path
    shutil.rmtree(path)


def request(notebook_dir, **settings) -> ContainerRequest:
    return ContainerRequest(
        kernel_id="0123456789abcdef",
        environment_id="docker-py",
        image="sha256:feed",
        python="/usr/bin/python3",
        connection_file=str(notebook_dir / "kernel.json"),
        cwd=str(notebook_dir),
        settings={"user": "4242:4243", **settings},
        instance=ServerInstance.current(),
        server_env={"LANG": "C.UTF-8", "SECRET_TOKEN": "x"},
        env_allowlist=["LANG"],
        gpu_environment={"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"},
    )


def test_gpu_counts_schedule_all_and_ids_are_refused():
    assert swarm_gpu_count(GpuSet.parse(2), "NVIDIA-GPU") == 2
    assert swarm_gpu_count(GpuSet.none(), "NVIDIA-GPU") == 0
    with pytest.raises(KernelStartFailed, match='gpus="all" cannot be scheduled in swarm'):
        swarm_gpu_count(GpuSet.all(), "NVIDIA-GPU")
    with pytest.raises(KernelStartFailed, match="names particular GPUs"):
        swarm_gpu_count(GpuSet.parse("GPU-1234abcd"), "NVIDIA-GPU")


def test_task_template_carries_docker_modes_decisions(notebook_dir):
    req = request(notebook_dir, mem_limit="512m", cpus=1.5, shm_size="64m", cap_drop=["NET_RAW"])
    ports = pick_ports(set())
    spec = ServiceRequest(req, "secret-id", "gpuenv-sec", "NVIDIA-GPU", 1, ports, "1.44")
    template = task_template(spec)
    container = template["ContainerSpec"]
    assert container["User"] == "4242:4243"
    assert container["Dir"] == str(notebook_dir)
    assert container["Init"] is True
    assert "LANG=C.UTF-8" in container["Env"]
    assert not [e for e in container["Env"] if e.startswith("SECRET_TOKEN")]
    assert container["Command"][0] == "/usr/bin/python3"
    assert "/run/secrets/gpuenv-sec.json" in container["Args"]
    targets = [m["Target"] for m in container["Mounts"]]
    assert CONNECTION_FILE_IN_CONTAINER not in targets
    assert str(notebook_dir) in targets and "/dev/shm" in targets
    (secret,) = container["Secrets"]
    assert secret["SecretID"] == "secret-id"
    assert secret["File"] == {
        "Name": "gpuenv-sec.json",
        "UID": "4242",
        "GID": "4243",
        "Mode": 0o400,
    }
    # Every capability goes, whatever else the admin drops, and setuid programs cannot
    # raise the kernel's rights (no-new-privileges, which API 1.44 keeps).
    assert container["CapabilityDrop"] == ["ALL", "NET_RAW"]
    assert container["Privileges"] == {"NoNewPrivileges": True}
    resources = template["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 512 * 2**20}
    assert resources["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}
    ]
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template["Networks"] == [{"Target": "host"}]
    assert container["Labels"][labels.KERNEL_ID] == req.kernel_id


@pytest.mark.parametrize(
    ("api_version", "kept"),
    [("1.41", False), ("1.43", False), ("1.44", True), ("1.45", True), ("1.52", True)],
)
def test_no_new_privileges_is_sent_from_api_1_44_on(notebook_dir, api_version, kept):
    """The spec create_service sends as is (docker-py has no typed field for it); an
    older API would drop the field silently, so it is not sent there."""
    spec = ServiceRequest(
        request(notebook_dir), "secret-id", "gpuenv-sec", "NVIDIA-GPU", 0, {}, api_version
    )
    sent = json.loads(json.dumps(task_template(spec)))
    container = sent["ContainerSpec"]
    assert gives_no_new_privileges(api_version) is kept
    assert container.get("Privileges") == ({"NoNewPrivileges": True} if kept else None)
    assert container["CapabilityDrop"] == ["ALL"]


def test_nodes_older_than_engine_25_are_named():
    def node(name, version):
        return {"ID": f"id-{name}", "Description": {"Hostname": name, "Engine": version}}

    nodes = [
        node("new", {"EngineVersion": "25.0.0"}),
        node("newer", {"EngineVersion": "27.3.1"}),
        node("old", {"EngineVersion": "20.10.24+dfsg1"}),
        node("almost", {"EngineVersion": "24.0.9"}),
        node("dev", {"EngineVersion": "dev"}),
        node("silent", {}),
    ]
    assert old_nodes(nodes) == [
        "almost (24.0.9)",
        "dev (dev)",
        "old (20.10.24+dfsg1)",
        "silent (unknown)",
    ]
    assert engine_is_new_enough("25.0.0-rc.1") and engine_is_new_enough("100.1")
    assert not engine_is_new_enough("2.50")


def test_ports_are_random_distinct_and_avoid_those_taken(notebook_dir):
    rng = random.Random(7)
    first = pick_ports(set(), rng)
    assert list(first) == list(PORT_NAMES) and len(set(first.values())) == 5
    assert all(PORT_RANGE[0] <= p <= PORT_RANGE[1] for p in first.values())
    taken = set(range(PORT_RANGE[0], PORT_RANGE[1] - 10))
    second = pick_ports(taken, rng)
    assert not taken & set(second.values())
    req = request(notebook_dir)
    recorded = service_labels(req, first)
    assert ports_in_labels(recorded) == set(first.values())
    assert recorded[PORTS_LABEL]
    assert len(service_name(req)) <= 63 and service_name(req) != service_name(req)


def test_connection_payload_binds_every_address_with_the_keys():
    info = {"key": b"k3y", "curve_secretkey": "s", "ip": "127.0.0.1", "shell_port": 1}
    ports = dict.fromkeys(PORT_NAMES, 0) | {"shell_port": 25000}
    data = json.loads(connection_payload(info, ports))
    assert data["ip"] == "0.0.0.0" and data["key"] == "k3y" and data["shell_port"] == 25000
    assert data["curve_secretkey"] == "s"
