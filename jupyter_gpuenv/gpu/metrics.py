"""GPU use as Prometheus metrics (text exposition format 0.0.4), from one shared sample.

Admins who already run Prometheus and Grafana scrape ``/gpuenv/metrics``; the figures are
those of ``GET /gpuenv/api/gpus`` (the same sample, the same per-user view): per GPU
memory, utilization, temperature and power, per kernel the GPU memory its processes
hold, labelled with the kernel's environment and user. A figure NVML does not give is
left out rather than reported as 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..kernel.gpu_snapshot import GpuDevice, GpuSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Gauge:
    """One metric family: a name, its help text and its labelled samples."""

    name: str
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, labels: Labels, value: float | None) -> None:
        if value is not None:
            self.samples.append((labels, value))

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} gauge"]
        for labels, value in self.samples:
            out.append(f"{self.name}{format_labels(labels)} {format_value(value)}")
        return out


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed escaped, as the exposition format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)
    return "{" + inner + "}"


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _gpu_labels(gpu: GpuDevice) -> Labels:
    return (("gpu", str(gpu.index)), ("uuid", gpu.uuid or ""), ("name", gpu.name or ""))


def gpu_metrics(snapshot: GpuSnapshot, server_user: str = "") -> list[Gauge]:
    """The metric families of one sample. ``server_user`` is the user of this server's
    own kernels (on JupyterHub, the Hub user: every user's kernels may run as one unix
    user); other kernels (``show_all_gpu_processes``) keep their process's user."""
    available = Gauge("gpuenv_gpus_available", "1 when the GPUs could be read, else 0.")
    available.add((), 1 if snapshot.available else 0)
    count = Gauge("gpuenv_gpus", "GPUs visible to this server's user.")
    count.add((), len(snapshot.gpus) if snapshot.available else 0)
    used = Gauge("gpuenv_gpu_memory_used_bytes", "GPU memory in use, in bytes.")
    total = Gauge("gpuenv_gpu_memory_total_bytes", "GPU memory in all, in bytes.")
    util = Gauge(
        "gpuenv_gpu_utilization_percent",
        "Percent of the last sample period during which a kernel ran on the GPU.",
    )
    mem_util = Gauge(
        "gpuenv_gpu_memory_utilization_percent",
        "Percent of the last sample period during which GPU memory was read or written.",
    )
    temperature = Gauge("gpuenv_gpu_temperature_celsius", "GPU temperature, in degrees Celsius.")
    power = Gauge("gpuenv_gpu_power_watts", "GPU power draw, in watts.")
    kernel_memory = Gauge(
        "gpuenv_kernel_gpu_memory_used_bytes",
        "GPU memory held by a kernel's processes on one GPU, in bytes.",
    )
    kernel_util = Gauge(
        "gpuenv_kernel_gpu_utilization_percent",
        "Percent of a GPU's streaming multiprocessors a kernel's processes kept busy.",
    )
    kernel_processes = Gauge(
        "gpuenv_kernel_gpu_processes",
        "A kernel's processes on one GPU (the kernel and its workers).",
    )
    for gpu in snapshot.gpus if snapshot.available else []:
        labels = _gpu_labels(gpu)
        used.add(labels, gpu.memory_used)
        total.add(labels, gpu.memory_total)
        util.add(labels, gpu.utilization_gpu)
        mem_util.add(labels, gpu.utilization_memory)
        temperature.add(labels, gpu.temperature)
        power.add(labels, gpu.power_draw)
        for kernel in _kernels_on(gpu, server_user):
            kernel_memory.add(kernel.labels, kernel.memory)
            kernel_util.add(kernel.labels, kernel.utilization)
            kernel_processes.add(kernel.labels, kernel.processes)
    return [
        available,
        count,
        used,
        total,
        util,
        mem_util,
        temperature,
        power,
        kernel_memory,
        kernel_util,
        kernel_processes,
    ]


@dataclass
class KernelOnGpu:
    """One kernel's processes on one GPU, summed."""

    labels: Labels
    memory: int = 0
    utilization: int | None = None
    processes: int = 0


def _kernels_on(gpu: GpuDevice, server_user: str) -> Iterable[KernelOnGpu]:
    """Per kernel on this GPU: memory and SM utilization summed over its processes."""
    found: dict[str, KernelOnGpu] = {}
    for proc in gpu.processes:
        if not proc.kernel_id:
            continue
        kernel = found.get(proc.kernel_id)
        if kernel is None:
            kernel = found[proc.kernel_id] = KernelOnGpu(
                (
                    ("kernel_id", proc.kernel_id),
                    ("environment", proc.environment_id or ""),
                    ("user", (server_user if proc.own else "") or proc.user or ""),
                    ("gpu", str(gpu.index)),
                )
            )
        kernel.memory += proc.used_memory or 0
        kernel.processes += 1
        if proc.utilization_sm is not None:
            kernel.utilization = min(100, (kernel.utilization or 0) + proc.utilization_sm)
    return found.values()


def render_metrics(snapshot: GpuSnapshot, server_user: str = "") -> str:
    """The whole exposition, ending with a line feed."""
    lines: list[str] = []
    for gauge in gpu_metrics(snapshot, server_user):
        lines.extend(gauge.lines())
    return "\n".join(lines) + "\n"
