"""The broker's GPUs: ids as the host names them, and one kernel per piece of hardware,
where a MIG device is a slice of its GPU.

The host is the fake NVML at the library boundary (tests/support/fake_nvml.py): GPU 0 in
MIG mode with two MIG devices, GPU 1 without MIG. The broker reads it through its own
sampler and ``host_gpus_of`` as ``jupyter gpuenv broker`` does. Kernels that hold GPUs are
the broker's own, re-attached after a restart from real containers of the engine (this
host cannot run GPU containers): what a broker that ran them before its restart finds.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import pytest
from docker.types import DeviceRequest

from jupyter_gpuenv.broker.app import host_gpus_of
from jupyter_gpuenv.broker.gpu_choice import HostGpus
from jupyter_gpuenv.broker.kernel_record import Conflict
from jupyter_gpuenv.broker.kernels import KernelBroker
from jupyter_gpuenv.broker.rules import HubUser
from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.errors import PolicyViolation
from jupyter_gpuenv.gpu.sampler import build_gpu_sampler
from jupyter_gpuenv.gpu_set import GpuSet
from jupyter_gpuenv.provisioning.container import orphans
from jupyter_gpuenv.services import Services
from tests.provisioning.server_process import make_shared_dir
from tests.support.fake_nvml import FakeGpu, FakeMig, FakeNvml

GPU0 = "GPU-5e1f0000-1111-4000-8000-000000000000"
GPU1 = "GPU-9c2a0000-2222-4000-8000-000000000001"
SLICE_A = "MIG-7d3b0000-aaaa-4000-8000-00000000000a"  # GPU 0, GPU instance 1, compute 0
SLICE_B = "MIG-8e4c0000-bbbb-4000-8000-00000000000b"  # GPU 0, GPU instance 2, compute 0


def mig_host() -> FakeNvml:
    slices: list[FakeMig | None] = [
        FakeMig(uuid=SLICE_A, gpu_instance_id=1, compute_instance_id=0),
        None,  # an empty slot
        FakeMig(uuid=SLICE_B, gpu_instance_id=2, compute_instance_id=0),
    ]
    return FakeNvml(
        [
            FakeGpu(name="NVIDIA A100-SXM4-40GB", uuid=GPU0, mig_mode=1, mig_slots=slices),
            FakeGpu(name="NVIDIA A100-SXM4-40GB", uuid=GPU1, mig_mode=0),
        ]
    )


@pytest.fixture
def host() -> Iterator[Any]:
    """The broker's sampler over the fake NVML, as ``jupyter gpuenv broker`` builds it."""
    sampler = build_gpu_sampler(GpuEnv(), nvml=mig_host())
    yield sampler
    sampler.stop()


# -- ids, however spelled, are the host's UUIDs ------------------------------------------


def test_the_broker_sees_the_gpus_and_their_mig_devices(host: Any) -> None:
    found = host_gpus_of(host)
    assert found is not None
    assert found.gpus == [GPU0, GPU1]
    assert [(d.uuid, d.gpu) for d in found.devices if d.is_mig] == [
        (SLICE_A, GPU0),
        (SLICE_B, GPU0),
    ]


@pytest.mark.parametrize(
    ("asked", "device"),
    [
        ("0", GPU0),
        ("01", GPU1),  # an index, as gpu_set reads it
        (GPU1.lower(), GPU1),
        (GPU1[4:], GPU1),  # without "GPU-"
        ("gpu-9C2A", GPU1),  # a unique prefix, any case
        (SLICE_B.lower(), SLICE_B),
        (SLICE_B[4:], SLICE_B),  # without "MIG-"
        (f"{GPU0}/2/0", SLICE_B),  # the GPU's UUID with GPU and compute instance
        (f"MIG-{GPU0.lower()}/1/0", SLICE_A),  # older drivers' spelling
    ],
)
def test_gpu_and_mig_ids_are_the_hosts_uuids_however_spelled(
    host: Any, asked: str, device: str
) -> None:
    found = host_gpus_of(host)
    assert found is not None and found.resolve(asked) == device


@pytest.mark.parametrize(
    ("asked", "why"),
    [
        ("2", "this host has 2 GPU"),
        ("GPU-ffff", "not one of this host's GPUs"),
        ("MIG-ffff", "not one of this host's GPUs"),
        (f"{GPU0}/3/0", "not one of this host's MIG devices"),
        (f"{GPU1}/1/0", "not one of this host's MIG devices"),
        ("", "not one of this host's GPUs"),
    ],
)
def test_an_id_that_names_no_single_device_is_refused_in_the_callers_words(
    host: Any, asked: str, why: str
) -> None:
    found = host_gpus_of(host)
    assert found is not None
    with pytest.raises(PolicyViolation, match=why) as refused:
        found.resolve(asked)
    named = {GPU0, GPU1, SLICE_A, SLICE_B} - {asked.split("/")[0].removeprefix("MIG-")}
    assert not any(uuid in refused.value.message for uuid in named), refused.value.message


def test_two_prefixes_of_one_host_are_ambiguous() -> None:
    found = HostGpus.whole(["GPU-0a1b2c3d-0000", "GPU-0a1b9999-0000"])
    with pytest.raises(PolicyViolation, match="more than one"):
        found.resolve("0a1b")


# -- a MIG device and its GPU are one piece of hardware ----------------------------------


@pytest.fixture
async def broker(
    host: Any, python_kernel_image: str, docker_client: docker.DockerClient
) -> AsyncIterator[KernelBroker]:
    """A broker over the MIG host offering one environment that may have any GPU."""
    orphans.use_instance_id(f"gpuenv-broker-gpus-{secrets.token_hex(4)}")
    folder = make_shared_dir("gpuenv-broker-gpus-", None, None)
    config = GpuEnv()
    config.docker_images = {"gpu": {"image": python_kernel_image, "gpus": "all"}}
    config.restrict_to_configured_images = True
    services = Services.build(config, cache_path=None)
    rules = {"default": {"environments": ["gpu"], "notebook_roots": [str(folder)]}}
    broker = KernelBroker(config, services, rules, host_gpus=lambda: host_gpus_of(host))
    yield broker
    for kernel in list(broker.kernels.values()):
        await broker.stop(kernel)
    services.stop()
    folder.rmdir()


def running_kernel(
    client: docker.DockerClient, image: str, user: str, gpus: list[str]
) -> docker.models.containers.Container:
    """A container the broker labelled as one of its kernels holding ``gpus``."""
    return client.containers.create(
        image,
        ["sleep", "600"],
        labels={
            labels.ROLE: "kernel",
            labels.SERVER_ID: orphans.this_instance().id,
            labels.KERNEL_ID: str(uuid.uuid4()),
            labels.USER: user,
            labels.ENVIRONMENT_ID: "gpu",
        },
        device_requests=[DeviceRequest(device_ids=gpus, capabilities=[["gpu"]])],
    )


def user(name: str, broker: KernelBroker) -> HubUser:
    root = broker.rules["default"]["notebook_roots"][0]
    return HubUser(name, (), 4000 + len(name), 4000 + len(name), root)


def start_body(broker: KernelBroker, gpus: Any) -> dict[str, Any]:
    env_id = next(
        e.id for e in broker.services.catalog.list_environments_sync() if e.name == "gpu"
    )
    return {
        "kernel_id": str(uuid.uuid4()),
        "environment_id": env_id,
        "key": secrets.token_hex(16),
        "signature_scheme": "hmac-sha256",
        "cwd": broker.rules["default"]["notebook_roots"][0],
        "config": {"gpus": gpus},
    }


@pytest.mark.docker
async def test_a_mig_device_in_use_makes_its_gpu_busy(
    broker: KernelBroker, python_kernel_image: str, docker_client: docker.DockerClient
) -> None:
    """Bob's kernel holds MIG device A of GPU 0: Alice gets neither GPU 0 whole nor that
    slice, in any spelling, but the other slice and GPU 1 are free."""
    running_kernel(docker_client, python_kernel_image, "bob", [SLICE_A])
    assert await broker.reattach() == 1
    alice = user("alice", broker)
    for asked in ([GPU0], ["0"], [SLICE_A.lower()], [f"{GPU0}/1/0"]):
        with pytest.raises(Conflict, match="is in use by another kernel") as refused:
            await broker.start(alice, start_body(broker, asked))
        assert asked[0] in refused.value.message  # the caller's own words
    assert broker.kernels_of("alice") == []
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{labels.USER}=alice"}
    )
    rules = broker.rules_of(alice)
    # What a start would get (the broker's choice, before Docker):
    chosen = broker._choose_gpus(alice, rules, GpuSet.parse([SLICE_B]))
    assert chosen.ids == (SLICE_B,)
    assert broker._choose_gpus(alice, rules, GpuSet.parse(1)).ids == (GPU1,)
    assert broker._choose_gpus(alice, rules, GpuSet.parse([f"MIG-{GPU0}/2/0"])).ids == (
        SLICE_B,
    )
    with pytest.raises(Conflict, match="No 2 free GPU"):
        broker._choose_gpus(alice, rules, GpuSet.parse(2))


@pytest.mark.docker
async def test_a_whole_gpu_in_use_makes_its_mig_devices_busy(
    broker: KernelBroker, python_kernel_image: str, docker_client: docker.DockerClient
) -> None:
    running_kernel(docker_client, python_kernel_image, "bob", [GPU0])
    assert await broker.reattach() == 1
    alice = user("alice", broker)
    for asked in ([SLICE_B], [f"{GPU0}/1/0"]):
        with pytest.raises(Conflict, match="is in use by another kernel"):
            await broker.start(alice, start_body(broker, asked))
    assert broker._choose_gpus(alice, broker.rules_of(alice), GpuSet.parse(1)).ids == (GPU1,)


def test_two_slices_of_one_gpu_are_separate_devices(host: Any) -> None:
    found = host_gpus_of(host)
    assert found is not None
    assert found.busy([SLICE_B], [SLICE_A]) == []
    assert found.busy([GPU0, GPU1], [SLICE_A]) == [GPU0]
    assert found.busy([SLICE_A, SLICE_B], [GPU0]) == [SLICE_A, SLICE_B]
    assert found.free([SLICE_A, SLICE_B], 1) == [GPU1]
    assert found.free([SLICE_A, GPU1], 1) is None
