"""Swarm mode's service spec: Docker mode's decisions (user, variables, mounts, limits,
labels) as a Swarm task, GPUs as a count reservation, the connection info as a secret."""

from __future__ import annotations

import json
import random

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.gpu_set import GpuSet
from jupyter_gpuenv.provisioning.container.orphans import ServerInstance
from jupyter_gpuenv.provisioning.container.request import (
    CONNECTION_FILE_IN_CONTAINER,
    ContainerRequest,
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


def request(tmp_path, **settings) -> ContainerRequest:
    return ContainerRequest(
        kernel_id="0123456789abcdef",
        environment_id="docker-py",
        image="sha256:feed",
        python="/usr/bin/python3",
        connection_file=str(tmp_path / "kernel.json"),
        cwd=str(tmp_path),
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


def test_task_template_carries_docker_modes_decisions(tmp_path):
    req = request(tmp_path, mem_limit="512m", cpus=1.5, shm_size="64m", cap_drop=["NET_RAW"])
    ports = pick_ports(set())
    spec = ServiceRequest(req, "secret-id", "gpuenv-sec", "NVIDIA-GPU", 1, ports)
    template = task_template(spec)
    container = template["ContainerSpec"]
    assert container["User"] == "4242:4243"
    assert container["Dir"] == str(tmp_path)
    assert container["Init"] is True
    assert "LANG=C.UTF-8" in container["Env"]
    assert not [e for e in container["Env"] if e.startswith("SECRET_TOKEN")]
    assert container["Command"][0] == "/usr/bin/python3"
    assert "/run/secrets/gpuenv-sec.json" in container["Args"]
    targets = [m["Target"] for m in container["Mounts"]]
    assert CONNECTION_FILE_IN_CONTAINER not in targets
    assert str(tmp_path) in targets and "/dev/shm" in targets
    (secret,) = container["Secrets"]
    assert secret["SecretID"] == "secret-id"
    assert secret["File"] == {
        "Name": "gpuenv-sec.json",
        "UID": "4242",
        "GID": "4243",
        "Mode": 0o400,
    }
    # Every capability goes, whatever else the admin drops: services carry no
    # no-new-privileges, so a setuid program must find nothing to gain.
    assert container["CapabilityDrop"] == ["ALL", "NET_RAW"]
    resources = template["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 512 * 2**20}
    assert resources["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}
    ]
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template["Networks"] == [{"Target": "host"}]
    assert container["Labels"][labels.KERNEL_ID] == req.kernel_id


def test_ports_are_random_distinct_and_avoid_those_taken(tmp_path):
    rng = random.Random(7)
    first = pick_ports(set(), rng)
    assert list(first) == list(PORT_NAMES) and len(set(first.values())) == 5
    assert all(PORT_RANGE[0] <= p <= PORT_RANGE[1] for p in first.values())
    taken = set(range(PORT_RANGE[0], PORT_RANGE[1] - 10))
    second = pick_ports(taken, rng)
    assert not taken & set(second.values())
    req = request(tmp_path)
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
