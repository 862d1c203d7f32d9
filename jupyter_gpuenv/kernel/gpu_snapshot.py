"""Typed GPU status snapshots: what one NVML sample saw, ready to serialise as REST JSON.

Every metric is optional: NVML answers "not supported" or "no permission" per metric
and per device, and a snapshot keeps those as ``None`` instead of failing as a whole.
Units are plain and stated in the names' docs: bytes for memory, percent for
utilization, degrees Celsius, watts.

Runs inside kernels too (``%gpuinfo``): standard library only, Python >= 3.8.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

STATE_OK = "ok"
STATE_UNAVAILABLE = "unavailable"
STATE_SAMPLING = "sampling"

SAMPLING_REASON = "GPU status is being sampled; ask again in a moment"


@dataclass
class GpuProcess:
    """One compute process on a GPU, with the kernel it belongs to when known.

    ``pid`` is a host PID (NVML's view). ``used_memory`` is in bytes (None when NVML
    cannot tell, e.g. without permission). ``utilization_sm`` is the percent of the GPU's
    streaming multiprocessors the process kept busy since the previous sample (None where
    NVML does not report it, e.g. in MIG mode). ``own`` says whether the process belongs
    to the user of this server (its kernels or its own processes).
    """

    pid: int
    used_memory: int | None = None
    utilization_sm: int | None = None
    name: str | None = None
    mig_device_uuid: str | None = None
    container_id: str | None = None
    kernel_id: str | None = None
    environment_id: str | None = None
    notebook_path: str | None = None
    user: str | None = None
    own: bool = False


@dataclass
class MigDevice:
    """One MIG device (a compute instance slice of a GPU), addressed by its own UUID."""

    index: int
    uuid: str | None = None
    name: str | None = None
    memory_total: int | None = None
    memory_used: int | None = None
    memory_free: int | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


@dataclass
class GpuDevice:
    """One physical GPU as NVML indexes it (host order, PCI bus order).

    Memory in bytes, utilization in percent, temperature in degrees Celsius, power in
    watts, ``compute_capability`` as "8.6", ``mig_mode`` "enabled"/"disabled" (None when
    the GPU has no MIG support). ``hidden_processes`` counts processes left out of
    ``processes`` by the per-user view (their memory still shows in ``memory_used``).
    """

    index: int
    uuid: str | None = None
    name: str | None = None
    memory_total: int | None = None
    memory_used: int | None = None
    memory_free: int | None = None
    memory_reserved: int | None = None
    utilization_gpu: int | None = None
    utilization_memory: int | None = None
    temperature: int | None = None
    power_draw: float | None = None
    power_limit: float | None = None
    compute_capability: str | None = None
    mig_mode: str | None = None
    mig_devices: list[MigDevice] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)
    hidden_processes: int = 0

    def all_uuids(self) -> list[str]:
        """This GPU's UUID and those of its MIG devices (what grants may name)."""
        ids = [self.uuid] if self.uuid else []
        ids.extend(m.uuid for m in self.mig_devices if m.uuid)
        return ids


@dataclass
class GpuSnapshot:
    """The host's GPUs at ``sampled_at`` (Unix seconds), or why they cannot be read.

    ``state`` is "ok", "unavailable" (``reason`` says why, in words a person
    understands) or "sampling" (no sample yet). ``cuda_driver_version`` is the newest
    CUDA the driver supports, as "12.4".
    """

    available: bool
    reason: str | None = None
    state: str = STATE_OK
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpu_count: int = 0
    gpus: list[GpuDevice] = field(default_factory=list)
    sampled_at: float | None = None

    @classmethod
    def unavailable(
        cls, reason: str, driver_version: str | None = None, **extra: Any
    ) -> GpuSnapshot:
        """No GPU can be read; ``reason`` is the sentence shown to people."""
        return cls(
            available=False,
            reason=reason,
            state=STATE_UNAVAILABLE,
            driver_version=driver_version,
            sampled_at=time.time(),
            **extra,
        )

    @classmethod
    def sampling(cls) -> GpuSnapshot:
        """Placeholder answered before the first sample is ready (never blocks)."""
        return cls(available=False, reason=SAMPLING_REASON, state=STATE_SAMPLING)

    def to_json(self) -> dict[str, Any]:
        """The REST representation (``GET /gpuenv/api/gpus``)."""
        return asdict(self)

    def processes(self) -> list[GpuProcess]:
        """Every process of every GPU, in GPU order."""
        return [p for gpu in self.gpus for p in gpu.processes]


def format_cuda_version(value: int | None) -> str | None:
    """NVML's CUDA driver version integer (1000*major + 10*minor) as "12.4"."""
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def snapshot_from_json(data: dict[str, Any]) -> GpuSnapshot:
    """Rebuild a snapshot from its REST JSON (the CLI and tests read it back)."""
    gpus = []
    for raw in data.get("gpus") or []:
        raw = dict(raw)
        migs = [MigDevice(**m) for m in raw.pop("mig_devices", None) or []]
        procs = [GpuProcess(**p) for p in raw.pop("processes", None) or []]
        gpus.append(GpuDevice(mig_devices=migs, processes=procs, **raw))
    fields = {k: v for k, v in data.items() if k != "gpus"}
    return GpuSnapshot(gpus=gpus, **fields)


def human_bytes(value: int) -> str:
    """Bytes as people read GPU memory: 512 MiB, 23.6 GiB."""
    size = float(value)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
