"""Each runtime's record survives JSON and comes back as the same runtime.

The records of real kernels are checked where those kernels run (engine:
test_docker_settings.py, Swarm: tests/cluster/test_swarm_reattach.py, broker:
tests/broker/test_broker_reattach.py); here every field, the provisioner's choice of
runtime and records that are not what a runtime wrote.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.provisioning.container.brokered.broker_runtime import BrokeredRuntime
from jupyter_gpuenv.provisioning.container.engine.engine_runtime import EngineRuntime
from jupyter_gpuenv.provisioning.container.provisioner import DockerProvisioner
from jupyter_gpuenv.provisioning.container.runtime import RuntimeContext
from jupyter_gpuenv.provisioning.container.runtimes import RUNTIMES, runtime_kind
from jupyter_gpuenv.provisioning.container.swarm.swarm_runtime import SwarmRuntime
from jupyter_gpuenv.provisioning.kernel_errors import KernelStartFailed


def no_docker(ping: bool) -> Any:
    raise AssertionError("a record round trip asks Docker nothing")


def context(**extra: Any) -> RuntimeContext:
    return RuntimeContext(
        kernel_id="0b8c6d6e-4a52-4bd4-8a5e-2f5b8f3c1a77",
        log=logging.getLogger("test"),
        docker=no_docker,
        owned=False,
        **extra,
    )


RECORDS: dict[str, dict[str, Any]] = {
    "engine": {
        "kind": "engine",
        "container_id": "f" * 64,
        "container_name": "gpuenv-kernel-py-0b8c6d6e",
        "image": "sha256:" + "a" * 64,
        "connection_copy": "/run/gpuenv-private-1/kernel-0b8c6d6e.json",
    },
    "swarm": {
        "kind": "swarm",
        "image": "registry.example/pytorch:2.9",
        "connection_copy": None,
        "service": {
            "service_id": "svc123",
            "service_name": "gpuenv-kernel-py-0b8c6d6e",
            "secret_id": "sec456",
            "node_id": "node789",
            "node_name": "n2",
            "node_addr": "10.0.0.2",
            "gpus": ["GPU-1", "GPU-2"],
        },
    },
    "brokered": {
        "kind": "brokered",
        "started": True,
        "container_name": "gpuenv-kernel-py-0b8c6d6e",
        "image": "pytorch:2.9",
        "placement": {"service": "s", "node": "n3", "node_addr": "10.0.0.3", "gpus": ["GPU-3"]},
    },
}


@pytest.mark.parametrize("kind", sorted(RECORDS))
def test_a_record_round_trips_through_json(kind: str) -> None:
    record = json.loads(json.dumps(RECORDS[kind]))
    runtime = RUNTIMES[kind].from_record(record, context(broker_url="http://broker/"))
    assert runtime.kind == kind and runtime.exists
    assert runtime.record() == RECORDS[kind]
    again = RUNTIMES[kind].from_record(json.loads(json.dumps(runtime.record())), context())
    assert again.record() == RECORDS[kind]


def test_what_a_record_tells_the_rest_api() -> None:
    swarm = SwarmRuntime.from_record(RECORDS["swarm"], context())
    assert swarm.placement() == {
        "service": "gpuenv-kernel-py-0b8c6d6e",
        "node": "n2",
        "node_addr": "10.0.0.2",
        "gpus": ["GPU-1", "GPU-2"],
    }
    engine = EngineRuntime.from_record(RECORDS["engine"], context())
    assert engine.placement() is None
    assert engine.describe()["id"] == "f" * 64
    brokered = BrokeredRuntime.from_record(RECORDS["brokered"], context())
    assert brokered.describe()["broker"] is True
    assert brokered.placement() == RECORDS["brokered"]["placement"]


async def test_a_removed_kernel_records_as_gone() -> None:
    brokered = BrokeredRuntime.from_record({**RECORDS["brokered"], "started": False}, context())
    assert not brokered.exists
    assert await brokered.poll() == 0
    empty = EngineRuntime.from_record({"kind": "engine"}, context())
    assert not empty.exists and await empty.poll() == 0 and await empty.logs() == ""


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "engine", "container_id": ["not", "text"]},
        {"kind": "swarm", "service": {"service_id": 7}},
        {"kind": "swarm", "service": {"service_id": "s", "gpus": "GPU-1"}},
    ],
)
def test_a_record_that_no_runtime_wrote_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(KernelStartFailed, match="record"):
        RUNTIMES[bad["kind"]].from_record(bad, context())


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({}, "engine"),
        ({"scheduler": "swarm"}, "swarm"),
        ({"scheduler": "SWARM"}, "swarm"),
        ({"broker_url": "http://127.0.0.1:1/services/gpuenv-broker/"}, "brokered"),
        ({"broker_url": "http://127.0.0.1:1/", "scheduler": "swarm"}, "brokered"),
    ],
)
def test_the_configuration_picks_the_runtime(settings: dict[str, Any], kind: str) -> None:
    assert runtime_kind(GpuEnv(config=Config({"GpuEnv": settings}))) == kind


async def test_provisioner_info_of_an_earlier_release_reattaches() -> None:
    """Records written before runtimes had their own: container_id, or brokered."""
    provisioner = DockerProvisioner(kernel_id="k1", kernel_spec=None, parent=None)
    provisioner.use(GpuEnv(), None)  # type: ignore[arg-type]
    await provisioner.load_provisioner_info(
        {"kernel_id": "k1", "connection_info": {}, "container_id": "c" * 64, "image": "i"}
    )
    assert provisioner.runtime is not None and provisioner.runtime.kind == "engine"
    assert provisioner.container_id == "c" * 64 and provisioner.has_process
    provisioner.runtime.keep_after_exit()  # nothing of this test's record stays tracked

    brokered = DockerProvisioner(kernel_id="k2", kernel_spec=None, parent=None)
    brokered.use(GpuEnv(broker_url="http://127.0.0.1:1/"), None)  # type: ignore[arg-type]
    await brokered.load_provisioner_info(
        {"kernel_id": "k2", "connection_info": {}, "brokered": True, "image": "i"}
    )
    assert brokered.runtime is not None and brokered.brokered and brokered.has_process


async def test_an_unknown_runtime_is_refused() -> None:
    provisioner = DockerProvisioner(kernel_id="k3", kernel_spec=None, parent=None)
    provisioner.use(GpuEnv(), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kubernetes"):
        await provisioner.load_provisioner_info(
            {"kernel_id": "k3", "connection_info": {}, "runtime": {"kind": "kubernetes"}}
        )
