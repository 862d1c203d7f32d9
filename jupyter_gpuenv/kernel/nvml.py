"""The one place that talks to NVML (the ``pynvml`` module of ``nvidia-ml-py``).

Everything else reads GPUs through :class:`NvmlAdapter`, which turns NVML into a
:class:`~jupyter_gpuenv.gpu.snapshot.GpuSnapshot`: a metric that NVML refuses
(NotSupported, NoPermission, ...) becomes ``None`` for that field only, and a machine
where NVML cannot start at all (no driver, no library, driver/library mismatch) becomes
``available: false`` with a reason written for people. Tests hand the adapter a fake NVML
module at this boundary; production code imports pynvml lazily, on first use.

Runs inside kernels too (``%gpuinfo``): standard library only, Python >= 3.8.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from .gpu_snapshot import GpuDevice, GpuProcess, GpuSnapshot, MigDevice, format_cuda_version

KERNEL_SIDE_ENV = "JUPYTER_GPUENV_KERNEL_SIDE"

# NVML return codes (nvml.h); stable across driver releases.
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_OPERATING_SYSTEM = 17
ERROR_LIB_RM_VERSION_MISMATCH = 18

MIG_ENABLED = 1
TEMPERATURE_GPU = 0
UNSET_INSTANCE_ID = 0xFFFFFFFF

NO_BINDINGS_REASON = "the NVML Python bindings (nvidia-ml-py, module pynvml) are not installed here"

R = TypeVar("R")


def in_container() -> bool:
    """Whether this process runs in a container (changes what a missing library means)."""
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def init_failure_reason(code: int | None, message: str) -> str:
    """The sentence a person reads when NVML cannot start, by NVML error code."""
    if code == ERROR_LIBRARY_NOT_FOUND:
        if in_container():
            return (
                "libnvidia-ml.so not found in this container: it was started without the "
                "NVIDIA container runtime, or the host has no NVIDIA driver"
            )
        return "libnvidia-ml.so not found: no NVIDIA driver on this machine"
    if code == ERROR_DRIVER_NOT_LOADED:
        return (
            "NVIDIA driver not loaded (the nvidia kernel module is not running; "
            "check `nvidia-smi` and `lsmod | grep nvidia`)"
        )
    if code == ERROR_LIB_RM_VERSION_MISMATCH:
        return "driver/library version mismatch (reboot after a driver update)"
    if code == ERROR_NO_PERMISSION:
        return "no permission to open the NVIDIA devices (/dev/nvidia*)"
    if code == ERROR_GPU_IS_LOST:
        return "a GPU has fallen off the bus (NVML: GPU is lost); the machine needs a reset"
    if code == ERROR_OPERATING_SYSTEM:
        return "the operating system blocked access to the NVIDIA driver"
    if code == ERROR_FUNCTION_NOT_FOUND:
        return "the NVIDIA driver is too old for the installed nvidia-ml-py"
    return f"NVML could not start: {message}"


def load_pynvml() -> ModuleType | None:
    """Import pynvml; inside our kernels fall back to the copy shipped beside the package.

    Kernels run in environments that may lack nvidia-ml-py; provisioners mount a
    ``fallback/pynvml.py`` under ``$JUPYTER_GPUENV_KERNEL_SIDE``. It is loaded by file
    path so nothing else from that folder shadows the environment's own modules.
    """
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        pass
    side = os.environ.get(KERNEL_SIDE_ENV)
    if not side:
        return None
    path = os.path.join(side, "fallback", "pynvml.py")
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location("pynvml", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pynvml"] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop("pynvml", None)
        return None
    return module


class NvmlAdapter:
    """Reads one :class:`GpuSnapshot` per :meth:`read` call.

    ``nvml`` is the pynvml module (or a fake with the same functions); by default pynvml
    is imported on the first read. NVML stays initialised between reads (initialising
    costs far more than a sample); a failed start is retried on the next read, so a
    driver that appears later is picked up. One instance is safe to share across threads.
    """

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._loaded = nvml is not None
        self._initialized = False
        self._memory_v2: bool | None = None
        self._utilization_seen: dict[int, int] = {}  # per GPU index: newest sample, in µs
        self._lock = threading.Lock()

    def __enter__(self) -> NvmlAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle -----------------------------------------------------------------

    def _module(self) -> Any:
        if not self._loaded:
            self._nvml = load_pynvml()
            self._loaded = True
        return self._nvml

    def _errors(self, nvml: Any) -> tuple[type[BaseException], ...]:
        found = [getattr(nvml, "NVMLError", None), getattr(nvml, "NVMLLibraryMismatchError", None)]
        return tuple(e for e in found if isinstance(e, type)) + (AttributeError,)

    def close(self) -> None:
        """Shut NVML down (the sampler calls this when it stops)."""
        with self._lock:
            if self._initialized:
                self._initialized = False
                try:
                    self._nvml.nvmlShutdown()
                except self._errors(self._nvml):
                    pass

    # -- sampling ------------------------------------------------------------------

    def read(self) -> GpuSnapshot:
        """Sample every GPU now. Never raises for NVML trouble; see the module doc."""
        with self._lock:
            nvml = self._module()
            if nvml is None:
                return GpuSnapshot.unavailable(NO_BINDINGS_REASON)
            errors = self._errors(nvml)
            if not self._initialized:
                try:
                    nvml.nvmlInit()
                except errors as exc:
                    return GpuSnapshot.unavailable(
                        init_failure_reason(getattr(exc, "value", None), str(exc))
                    )
                self._initialized = True
            return self._read_initialized(nvml, errors)

    def _read_initialized(self, nvml: Any, errors: tuple[type[BaseException], ...]) -> GpuSnapshot:
        def get(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R | None:
            try:
                return fn(*args, **kwargs)
            except errors:
                return None

        driver = _text(get(nvml.nvmlSystemGetDriverVersion))
        cuda = get(getattr(nvml, "nvmlSystemGetCudaDriverVersion_v2", None) or _missing)
        if cuda is None:
            cuda = get(nvml.nvmlSystemGetCudaDriverVersion)
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except errors as exc:
            self._initialized = False
            return GpuSnapshot.unavailable(
                init_failure_reason(getattr(exc, "value", None), str(exc)), driver
            )
        if count == 0:
            where = f"driver {driver} is loaded" if driver else "the driver is loaded"
            return GpuSnapshot.unavailable(
                f"no NVIDIA GPU found ({where} but reports no devices)",
                driver,
                cuda_driver_version=format_cuda_version(cuda),
            )
        gpus = [self._read_device(nvml, get, i) for i in range(count)]
        return GpuSnapshot(
            available=True,
            driver_version=driver,
            cuda_driver_version=format_cuda_version(cuda),
            gpu_count=count,
            gpus=gpus,
            sampled_at=time.time(),
        )

    def _read_device(self, nvml: Any, get: Callable[..., Any], index: int) -> GpuDevice:
        device = GpuDevice(index=index)
        handle = get(nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            return device
        device.uuid = _text(get(nvml.nvmlDeviceGetUUID, handle))
        device.name = _text(get(nvml.nvmlDeviceGetName, handle))
        memory = self._memory(nvml, get, handle)
        if memory is not None:
            device.memory_total = memory.total
            device.memory_used = memory.used
            device.memory_free = memory.free
            device.memory_reserved = getattr(memory, "reserved", None)
        util = get(nvml.nvmlDeviceGetUtilizationRates, handle)
        if util is not None:
            device.utilization_gpu = util.gpu
            device.utilization_memory = util.memory
        temp_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", TEMPERATURE_GPU)
        device.temperature = get(nvml.nvmlDeviceGetTemperature, handle, temp_sensor)
        device.power_draw = _watts(get(nvml.nvmlDeviceGetPowerUsage, handle))
        device.power_limit = _watts(get(nvml.nvmlDeviceGetEnforcedPowerLimit, handle))
        capability = get(nvml.nvmlDeviceGetCudaComputeCapability, handle)
        if capability is not None:
            device.compute_capability = f"{capability[0]}.{capability[1]}"
        mig = get(nvml.nvmlDeviceGetMigMode, handle)
        if mig is not None:
            device.mig_mode = "enabled" if mig[0] == MIG_ENABLED else "disabled"
        processes: dict[int, GpuProcess] = {}
        for proc in get(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []:
            processes[proc.pid] = GpuProcess(pid=proc.pid, used_memory=proc.usedGpuMemory)
        if device.mig_mode == "enabled":
            device.mig_devices = self._read_mig(nvml, get, handle, processes)
        self._process_utilization(nvml, handle, index, processes)
        device.processes = sorted(processes.values(), key=lambda p: p.pid)
        return device

    def _process_utilization(
        self, nvml: Any, handle: Any, index: int, processes: dict[int, GpuProcess]
    ) -> None:
        """Each process's SM utilization since the previous read, from NVML's samples.

        NVML keeps a few seconds of per-process samples; the newest one of each process
        counts. "No sample since then" (NOT_FOUND) means no process ran a kernel: 0 %.
        Unsupported (MIG mode, old GPUs) or not allowed leaves the figure unknown.
        """
        fn = getattr(nvml, "nvmlDeviceGetProcessUtilization", None)
        if fn is None or not processes:
            return
        try:
            samples = fn(handle, self._utilization_seen.get(index, 0)) or []
        except self._errors(nvml) as exc:
            if getattr(exc, "value", None) == ERROR_NOT_FOUND:
                for proc in processes.values():
                    proc.utilization_sm = 0
            return
        newest: dict[int, Any] = {}
        for sample in samples:
            known = newest.get(sample.pid)
            if known is None or sample.timeStamp > known.timeStamp:
                newest[sample.pid] = sample
        if newest:
            self._utilization_seen[index] = max(s.timeStamp for s in newest.values())
        for pid, proc in processes.items():
            sample = newest.get(pid)
            value = int(sample.smUtil) if sample is not None else 0
            proc.utilization_sm = value if 0 <= value <= 100 else None

    def _memory(self, nvml: Any, get: Callable[..., Any], handle: Any) -> Any:
        """v2 memory (reserved memory split out) where the driver has it, else v1."""
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None and self._memory_v2 is not False:
            memory = get(nvml.nvmlDeviceGetMemoryInfo, handle, version=version)
            if memory is not None:
                self._memory_v2 = True
                return memory
            if self._memory_v2 is None:
                self._memory_v2 = False
        return get(nvml.nvmlDeviceGetMemoryInfo, handle)

    def _read_mig(
        self,
        nvml: Any,
        get: Callable[..., Any],
        handle: Any,
        processes: dict[int, GpuProcess],
    ) -> list[MigDevice]:
        """MIG devices of a GPU; their processes are tagged with the MIG device UUID."""
        slots = get(nvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0
        migs = []
        for slot in range(slots):
            mig_handle = get(nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot)
            if mig_handle is None:  # NOT_FOUND: an empty slot
                continue
            mig = MigDevice(index=slot)
            mig.uuid = _text(get(nvml.nvmlDeviceGetUUID, mig_handle))
            mig.name = _text(get(nvml.nvmlDeviceGetName, mig_handle))
            memory = get(nvml.nvmlDeviceGetMemoryInfo, mig_handle)
            if memory is not None:
                mig.memory_total, mig.memory_used = memory.total, memory.used
                mig.memory_free = memory.free
            gi = get(getattr(nvml, "nvmlDeviceGetGpuInstanceId", None) or _missing, mig_handle)
            ci = get(getattr(nvml, "nvmlDeviceGetComputeInstanceId", None) or _missing, mig_handle)
            mig.gpu_instance_id, mig.compute_instance_id = gi, ci
            for proc in get(nvml.nvmlDeviceGetComputeRunningProcesses, mig_handle) or []:
                entry = processes.setdefault(
                    proc.pid, GpuProcess(pid=proc.pid, used_memory=proc.usedGpuMemory)
                )
                entry.mig_device_uuid = mig.uuid
                if entry.used_memory is None:
                    entry.used_memory = proc.usedGpuMemory
            migs.append(mig)
        return migs


def _missing(*args: Any, **kwargs: Any) -> Any:
    raise AttributeError("not provided by this pynvml")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else round(milliwatts / 1000.0, 1)
