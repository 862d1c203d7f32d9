"""What THIS kernel process sees of the GPUs and of its deep-learning framework.

The server's GPU status shows the host; a kernel sees less and numbers it differently:
a container gets only the GPUs its runtime exposed (``NVIDIA_VISIBLE_DEVICES``), and the
CUDA runtime keeps and renumbers the ones in ``CUDA_VISIBLE_DEVICES``. This module
gathers that view plus PyTorch's build facts into one :class:`KernelGpuInfo`.

Runs inside kernels: standard library only (pynvml and torch optional, imported lazily),
Python >= 3.8.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from .gpu_snapshot import GpuDevice, GpuSnapshot
from .nvml import NvmlAdapter
from .previous_exit import read_previous_exit
from .versions import format_cudnn
from .visible_devices import apply_cuda_visible_devices, matches, nvidia_visible_ids

NO_GPU_SENTENCE = "No NVIDIA GPU is visible to this kernel"


@dataclass
class VisibleGpu:
    """One device as this process's CUDA runtime numbers it (``cuda_index``)."""

    cuda_index: int
    nvml_index: int
    uuid: str | None
    name: str | None
    memory_total: int | None = None
    memory_used: int | None = None
    own_memory: int | None = None
    compute_capability: str | None = None
    mig_device_uuid: str | None = None


@dataclass
class TorchInfo:
    """PyTorch's build as this kernel imports it. ``error`` when the import failed."""

    installed: bool = False
    version: str | None = None
    cuda: str | None = None
    hip: str | None = None
    cudnn: str | None = None
    cuda_available: bool | None = None
    arch_list: list[str] = field(default_factory=list)
    memory_reserved: int | None = None
    error: str | None = None

    @property
    def build(self) -> str:
        if self.cuda:
            return f"CUDA {self.cuda} build"
        if self.hip:
            return f"ROCm {self.hip} build"
        return "CPU build"


@dataclass
class KernelGpuInfo:
    """Everything ``%gpuinfo`` shows; ``to_json`` is what ``%gpuinfo --json`` returns."""

    available: bool
    reason: str | None
    pid: int
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    devices: list[VisibleGpu] = field(default_factory=list)
    cuda_visible_devices: str | None = None
    nvidia_visible_devices: str | None = None
    # Swarm mode: resource kind -> the ids Swarm assigned (DOCKER_RESOURCE_<kind>).
    scheduled_gpus: dict[str, str] = field(default_factory=dict)
    environment_id: str | None = None
    python_version: str = ""
    torch: TorchInfo = field(default_factory=TorchInfo)
    verdict: str | None = None
    verdict_message: str | None = None
    notes: list[str] = field(default_factory=list)
    previous_exit: dict[str, Any] | None = None

    @property
    def headline(self) -> str:
        if self.available:
            count = len(self.devices)
            return f"{count} NVIDIA GPU{'s' if count != 1 else ''} visible to this kernel"
        return f"{NO_GPU_SENTENCE}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["torch"]["build"] = self.torch.build
        data["headline"] = self.headline
        return data


def gather(
    nvml: Any = None, environ: dict[str, str] | None = None, with_torch: bool = True
) -> KernelGpuInfo:
    """Read NVML (``nvml`` replaces pynvml in tests), the visibility variables and torch."""
    env = os.environ if environ is None else environ
    with NvmlAdapter(nvml) as adapter:
        snapshot = adapter.read()
    info = KernelGpuInfo(
        available=False,
        reason=snapshot.reason,
        pid=os.getpid(),
        driver_version=snapshot.driver_version,
        cuda_driver_version=snapshot.cuda_driver_version,
        cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
        nvidia_visible_devices=env.get("NVIDIA_VISIBLE_DEVICES"),
        scheduled_gpus=scheduled_resources(env),
        environment_id=env.get("JUPYTER_GPUENV_ENVIRONMENT_ID"),
        python_version=".".join(str(p) for p in sys.version_info[:3]),
        previous_exit=read_previous_exit(env),
    )
    if with_torch:
        info.torch = read_torch()
    if snapshot.available:
        info.devices = visible_devices(snapshot, info, info.pid)
        info.available = bool(info.devices)
        if not info.devices:
            info.reason = _hidden_reason(info)
    if info.torch.memory_reserved is not None and len(info.devices) == 1:
        if info.devices[0].own_memory is None:  # NVML's PIDs are the host's in a container
            info.devices[0].own_memory = info.torch.memory_reserved
    add_verdict(info)
    return info


def scheduled_resources(env: Any) -> dict[str, str]:
    """What Swarm assigned the kernel's task: ``DOCKER_RESOURCE_<kind>=<ids>`` variables."""
    prefix = "DOCKER_RESOURCE_"
    return {k[len(prefix) :]: str(v) for k, v in env.items() if k.startswith(prefix)}


def visible_devices(snapshot: GpuSnapshot, info: KernelGpuInfo, pid: int) -> list[VisibleGpu]:
    """Apply NVIDIA_VISIBLE_DEVICES (when not applied yet) and CUDA_VISIBLE_DEVICES."""
    gpus = list(snapshot.gpus)
    nvidia = nvidia_visible_ids(info.nvidia_visible_devices or None)
    if nvidia and len(gpus) > len(nvidia):
        # A container runtime would have left only the listed GPUs; NVML sees more, so
        # the variable was not applied (a local process): apply it as CUDA would see it.
        gpus = [
            g
            for g in gpus
            if any(matches(n, g.index, u) for n in nvidia for u in g.all_uuids())
        ]
        info.notes.append(
            "NVIDIA_VISIBLE_DEVICES only takes effect in containers; listed here as a filter."
        )
    candidates: list[tuple[GpuDevice, Any]] = []
    for gpu in gpus:
        if gpu.mig_mode == "enabled" and gpu.mig_devices:
            candidates.extend((gpu, mig) for mig in gpu.mig_devices)
        else:
            candidates.append((gpu, None))
    chosen = apply_cuda_visible_devices(
        info.cuda_visible_devices,
        candidates,
        index_of=lambda c: c[0].index if c[1] is None else None,
        uuid_of=lambda c: c[1].uuid if c[1] is not None else c[0].uuid,
    )
    out = []
    for cuda_index, (gpu, mig) in enumerate(chosen):
        procs = [p for p in gpu.processes if mig is None or p.mig_device_uuid == mig.uuid]
        own = [p.used_memory or 0 for p in procs if p.pid == pid]
        out.append(
            VisibleGpu(
                cuda_index=cuda_index,
                nvml_index=gpu.index,
                uuid=gpu.uuid,
                name=mig.name if mig is not None else gpu.name,
                memory_total=mig.memory_total if mig is not None else gpu.memory_total,
                memory_used=mig.memory_used if mig is not None else gpu.memory_used,
                own_memory=sum(own) if own else None,
                compute_capability=gpu.compute_capability,
                mig_device_uuid=mig.uuid if mig is not None else None,
            )
        )
    names = {d.name for d in out}
    if len(names) > 1 and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        info.notes.append(
            "Mixed GPU models: CUDA numbers them fastest first unless "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID; the order above is NVML's (PCI bus)."
        )
    return out


def _hidden_reason(info: KernelGpuInfo) -> str:
    if info.cuda_visible_devices is not None:
        return f"CUDA_VISIBLE_DEVICES={info.cuda_visible_devices!r} hides every GPU"
    return f"NVIDIA_VISIBLE_DEVICES={info.nvidia_visible_devices!r} names no GPU of this machine"


def read_torch() -> TorchInfo:
    """torch's versions and build; never raises (a broken install becomes ``error``)."""
    info = TorchInfo()
    try:
        import torch  # optional, and slow to import
    except ImportError as exc:
        if getattr(exc, "name", None) != "torch":
            info.installed, info.error = True, f"import torch failed: {exc}"
        return info
    except Exception as exc:  # e.g. a CUDA library missing at import time
        info.installed, info.error = True, f"import torch failed: {type(exc).__name__}: {exc}"
        return info
    info.installed = True
    info.version = str(getattr(torch, "__version__", "") or "") or None
    version = getattr(torch, "version", None)
    info.cuda = getattr(version, "cuda", None)
    info.hip = getattr(version, "hip", None)
    info.cudnn = _call(lambda: format_cudnn(torch.backends.cudnn.version()))
    info.cuda_available = _call(lambda: bool(torch.cuda.is_available()))
    flags = _call(lambda: torch._C._cuda_getArchFlags())
    info.arch_list = flags.split() if isinstance(flags, str) else []
    if _call(lambda: torch.cuda.is_initialized()):  # never initialise CUDA just to look
        info.memory_reserved = _call(lambda: int(torch.cuda.memory_reserved()))
    return info


def _call(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def add_verdict(info: KernelGpuInfo) -> None:
    """The doctor's one-line verdict for this kernel's build on what it sees."""
    if not info.torch.installed or info.torch.error:
        return
    try:
        from .compatibility import evaluate
        from .host_info import HostInfo
    except ImportError:
        return
    status = {
        "available": info.available,
        "reason": info.reason,
        "driver_version": info.driver_version,
        "cuda_driver_version": info.cuda_driver_version,
        "gpus": [
            {
                "index": d.cuda_index,
                "name": d.name,
                "uuid": d.uuid,
                "compute_capability": d.compute_capability,
            }
            for d in info.devices
        ],
    }
    env_like = {
        "kind": None,
        "torch_version": info.torch.version,
        "cuda_version": info.torch.cuda,
        "cudnn_version": info.torch.cudnn,
        "torch_arch_list": info.torch.arch_list,
        "problems": [],
    }
    try:
        result = evaluate(env_like, HostInfo.from_gpu_status(status))
    except Exception as exc:  # the verdict is a bonus: never break %gpuinfo for it
        info.notes.append(f"compatibility check failed: {exc}")
        return
    info.verdict = result.verdict
    info.verdict_message = result.headline()
