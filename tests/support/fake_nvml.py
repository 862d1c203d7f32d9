"""A fake NVML for tests: an object with the pynvml functions the GPU adapter calls.

This machine has no GPU, so tests hand :class:`FakeNvml` to
``jupyter_gpuenv.kernel.nvml.NvmlAdapter(nvml=...)`` in place of the real ``pynvml``
module. It follows pynvml's contract where the adapter depends on it: functions raise
``NVMLError`` subclasses chosen by NVML return code (``NVMLError_NotSupported`` ...), every
call before ``nvmlInit`` raises ``Uninitialized``, the CUDA driver version is an integer
(12040 for 12.4), memory info v2 needs the ``version=nvmlMemory_v2`` argument, MIG slots
without a device raise ``NotFound``. PIDs are whatever the test puts in, typically real
host PIDs of real processes. Test-only: nothing in the package imports it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

# pynvml's return codes and constants the adapter reads.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999
NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
nvmlMemory_v2 = 0x02000028
UNSET_INSTANCE_ID = 0xFFFFFFFF

_uuid_counter = itertools.count(1)


class NVMLError(Exception):
    """Like pynvml.NVMLError: ``NVMLError(code)`` builds the subclass for that code."""

    _by_code: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, NVMLError)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return f"NVML error {self.value}"


def _error_class(name: str, code: int) -> type[NVMLError]:
    cls = type(name, (NVMLError,), {})
    NVMLError._by_code[code] = cls
    return cls


NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _error_class("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error_class(
    "NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND
)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_LibRmVersionMismatch = _error_class(
    "NVMLError_LibRmVersionMismatch", NVML_ERROR_LIB_RM_VERSION_MISMATCH
)


def fake_uuid(prefix: str = "GPU") -> str:
    n = next(_uuid_counter)
    return f"{prefix}-{n:08x}-fake-4000-8000-{n:012x}"


@dataclass
class FakeProcess:
    """A compute process as NVML lists it: host PID and GPU memory in bytes.

    ``sm_util``: the percent NVML's per-process utilization samples report for it (None:
    no sample, as for a process that ran no GPU kernel lately).
    """

    pid: int
    used_memory: int | None = 512 * 2**20
    sm_util: int | None = None


@dataclass
class FakeMig:
    """A MIG device (compute instance) in one slot of a GPU."""

    name: str = "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    uuid: str = field(default_factory=lambda: fake_uuid("MIG"))
    memory_total: int = 5 * 2**30
    memory_used: int = 0
    gpu_instance_id: int = 7
    compute_instance_id: int = 0
    processes: list[FakeProcess] = field(default_factory=list)


@dataclass
class FakeGpu:
    """One GPU. ``errors`` maps a pynvml function name to the code it fails with."""

    name: str = "NVIDIA GeForce RTX 3090"
    uuid: str = field(default_factory=fake_uuid)
    memory_total: int = 24 * 2**30
    memory_used: int = 2 * 2**30
    memory_reserved: int = 300 * 2**20
    utilization: tuple[int, int] = (35, 12)
    temperature: int = 51
    power_usage_mw: int = 118_500
    power_limit_mw: int = 350_000
    compute_capability: tuple[int, int] = (8, 6)
    mig_mode: int | None = None  # None: MIG not supported by this GPU
    mig_slots: list[FakeMig | None] = field(default_factory=list)
    processes: list[FakeProcess] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


class FakeNvml:
    """The fake ``pynvml`` module. ``calls`` counts calls per function name."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibRmVersionMismatch = NVMLError_LibRmVersionMismatch
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    nvmlMemory_v2 = nvmlMemory_v2

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        driver_version: str = "550.54.15",
        cuda_driver_version: int = 12040,
        init_error: int | None = None,
        memory_v2: bool = True,
        errors: dict[str, int] | None = None,
    ) -> None:
        self.gpus = list(gpus or [])
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.init_error = init_error
        self.memory_v2 = memory_v2
        self.errors = dict(errors or {})  # system-level failures by function name
        self.initialized = 0
        self.calls: Counter[str] = Counter()
        self.clock_us = 1_700_000_000_000_000  # NVML sample timestamps, in µs

    # -- plumbing ------------------------------------------------------------------

    def _enter(self, fn: str, handle: Any = None) -> None:
        self.calls[fn] += 1
        if fn not in ("nvmlInit", "nvmlShutdown") and self.initialized <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        code = self.errors.get(fn)
        if code is None and isinstance(handle, FakeGpu):
            code = handle.errors.get(fn)
        if code is not None:
            raise NVMLError(code)

    # -- library / system ----------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        if self.initialized <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        self.initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        code = gpu.errors.get("nvmlDeviceGetHandleByIndex")
        if code is not None:
            raise NVMLError(code)
        return gpu

    # -- per device (GPU or MIG handle) --------------------------------------------

    def nvmlDeviceGetUUID(self, handle: FakeGpu | FakeMig) -> str:
        self._enter("nvmlDeviceGetUUID", handle)
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeGpu | FakeMig) -> str:
        self._enter("nvmlDeviceGetName", handle)
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu | FakeMig, version: int | None = None) -> Any:
        self._enter("nvmlDeviceGetMemoryInfo", handle)
        reserved = handle.memory_reserved if isinstance(handle, FakeGpu) else 0
        if version:
            if not self.memory_v2:
                raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
            if version != nvmlMemory_v2:
                raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
            free = handle.memory_total - handle.memory_used - reserved
            return SimpleNamespace(
                version=version,
                total=handle.memory_total,
                reserved=reserved,
                used=handle.memory_used,
                free=free,
            )
        # v1 counts reserved memory as used.
        used = handle.memory_used + reserved
        return SimpleNamespace(
            total=handle.memory_total, used=used, free=handle.memory_total - used
        )

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> Any:
        self._enter("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=handle.utilization[0], memory=handle.utilization[1])

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return handle.temperature

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetPowerUsage", handle)
        return handle.power_usage_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit", handle)
        return handle.power_limit_mw

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeGpu) -> tuple[int, int]:
        self._enter("nvmlDeviceGetCudaComputeCapability", handle)
        return handle.compute_capability

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        self._enter("nvmlDeviceGetMigMode", handle)
        if handle.mig_mode is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return [handle.mig_mode, handle.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount", handle)
        if handle.mig_mode is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return len(handle.mig_slots) if handle.mig_mode == NVML_DEVICE_MIG_ENABLE else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeGpu, index: int) -> FakeMig:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if handle.mig_mode != NVML_DEVICE_MIG_ENABLE:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if not 0 <= index < len(handle.mig_slots) or handle.mig_slots[index] is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return handle.mig_slots[index]  # type: ignore[return-value]

    def nvmlDeviceGetGpuInstanceId(self, handle: FakeMig) -> int:
        self._enter("nvmlDeviceGetGpuInstanceId", handle)
        return handle.gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, handle: FakeMig) -> int:
        self._enter("nvmlDeviceGetComputeInstanceId", handle)
        return handle.compute_instance_id

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu | FakeMig) -> list[Any]:
        """Like NVML: a GPU lists its processes and, in MIG mode, those of its slices."""
        self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        if isinstance(handle, FakeMig):
            return [self._proc(p, handle) for p in handle.processes]
        procs = [self._proc(p, None) for p in handle.processes]
        if handle.mig_mode == NVML_DEVICE_MIG_ENABLE:
            for mig in handle.mig_slots:
                procs.extend(self._proc(p, mig) for p in (mig.processes if mig else []))
        return procs

    def nvmlDeviceGetProcessUtilization(self, handle: FakeGpu, last_seen: int) -> list[Any]:
        """Like NVML: one sample per process with ``sm_util`` set, newer than ``last_seen``
        (each call is one second later); none at all raises NOT_FOUND."""
        self._enter("nvmlDeviceGetProcessUtilization", handle)
        if handle.mig_mode == NVML_DEVICE_MIG_ENABLE:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        self.clock_us += 1_000_000
        samples = [
            SimpleNamespace(
                pid=p.pid, timeStamp=self.clock_us, smUtil=p.sm_util, memUtil=0, encUtil=0,
                decUtil=0,
            )
            for p in handle.processes
            if p.sm_util is not None and self.clock_us > last_seen
        ]
        if not samples:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return samples

    @staticmethod
    def _proc(proc: FakeProcess, mig: FakeMig | None) -> Any:
        return SimpleNamespace(
            pid=proc.pid,
            usedGpuMemory=proc.used_memory,
            gpuInstanceId=mig.gpu_instance_id if mig else UNSET_INSTANCE_ID,
            computeInstanceId=mig.compute_instance_id if mig else UNSET_INSTANCE_ID,
        )


def many_gpus(count: int, processes_per_gpu: int, first_pid: int = 100_000) -> FakeNvml:
    """A host of ``count`` identical GPUs with synthetic processes (benchmarks)."""
    pids = itertools.count(first_pid)
    gpus = [
        FakeGpu(
            name="NVIDIA H100 80GB HBM3",
            memory_total=80 * 2**30,
            compute_capability=(9, 0),
            processes=[FakeProcess(next(pids)) for _ in range(processes_per_gpu)],
        )
        for _ in range(count)
    ]
    return FakeNvml(gpus)
