"""``jupyter gpuenv gpus [--json] [--all]``: the GPU status the REST API serves, in a terminal.

One NVML sample, attributed to kernels through the containers' labels and the process
tree, filtered for the user like the server does (``--all`` shows every GPU and process
this account can see). ``--json`` prints exactly the ``GET /gpuenv/api/gpus`` document.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..config import GpuEnv
from ..gpu.sampler import build_gpu_sampler
from ..gpu.view import GpuView
from ..kernel.gpu_snapshot import GpuDevice, GpuSnapshot, human_bytes
from .output import print_json
from .server_kernels import ServerKernel, server_kernels

NO_GPU_SENTENCE = "No NVIDIA GPU is available"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gpus",
        help="show GPUs, their memory and which kernel uses them",
        description="Show the NVIDIA GPUs of this machine, their memory, utilization, "
        "temperature and power, and each compute process with the kernel, environment "
        "and notebook it belongs to.",
    )
    parser.add_argument("--json", action="store_true", help="print the REST API's JSON")
    parser.add_argument(
        "--all",
        action="store_true",
        help="every GPU and process, not only your grant and your own kernels",
    )
    parser.set_defaults(func=run)


def run(
    args: argparse.Namespace,
    config: GpuEnv,
    nvml: Any = None,
    servers: list[dict[str, Any]] | None = None,
) -> int:
    """Take one sample and print it. ``nvml`` replaces pynvml and ``servers`` the list of
    running servers (tests)."""
    sampler = build_gpu_sampler(config, nvml=nvml)
    if args.all:
        sampler.view = GpuView(show_all=True)
    kernels = {k.record.kernel_id: k for k in server_kernels(servers)}
    try:
        sample = sampler.sample_now([k.record for k in kernels.values()])
    finally:
        sampler.stop()
    if args.json:
        print_json(sample.snapshot.to_json())
    else:
        print(render_table(sample.snapshot, kernels))
    return 0


def _idle(kernel: ServerKernel | None) -> str:
    if kernel is None:
        return "-"
    if kernel.execution_state == "busy":
        return "busy"
    if kernel.idle_seconds is None:
        return "n/a"
    minutes, seconds = divmod(int(kernel.idle_seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _pct(value: int | None) -> str:
    return "n/a" if value is None else f"{value}%"


def _mem(used: int | None, total: int | None) -> str:
    if used is None or total is None:
        return "n/a"
    return f"{human_bytes(used)} / {human_bytes(total)}"


def _power(gpu: GpuDevice) -> str:
    if gpu.power_draw is None:
        return "n/a"
    limit = f" / {gpu.power_limit:.0f}" if gpu.power_limit is not None else ""
    return f"{gpu.power_draw:.0f}{limit} W"


def _table(rows: list[tuple[str, ...]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def render_table(snapshot: GpuSnapshot, kernels: dict[str, ServerKernel] | None = None) -> str:
    """A readable report: one line per GPU, its processes indented below it, with each
    kernel's idle time as its server reports it (``kernels``)."""
    kernels = kernels or {}
    if not snapshot.available:
        return f"{NO_GPU_SENTENCE}: {snapshot.reason}"
    when = time.strftime("%H:%M:%S", time.localtime(snapshot.sampled_at or time.time()))
    head = [
        f"NVIDIA driver {snapshot.driver_version or 'n/a'} · "
        f"CUDA driver {snapshot.cuda_driver_version or 'n/a'} · "
        f"{snapshot.gpu_count} GPU{'s' if snapshot.gpu_count != 1 else ''} · sampled {when}",
        "",
    ]
    gpu_rows: list[tuple[str, ...]] = [
        ("GPU", "Name", "Memory used / total", "Util", "Temp", "Power", "CC", "MIG")
    ]
    lines = head
    for gpu in snapshot.gpus:
        gpu_rows.append(
            (
                str(gpu.index),
                gpu.name or "n/a",
                _mem(gpu.memory_used, gpu.memory_total),
                _pct(gpu.utilization_gpu),
                "n/a" if gpu.temperature is None else f"{gpu.temperature}°C",
                _power(gpu),
                gpu.compute_capability or "n/a",
                gpu.mig_mode or "-",
            )
        )
    lines.extend(_table(gpu_rows))
    for gpu in snapshot.gpus:
        lines.append("")
        lines.append(f"GPU {gpu.index} ({gpu.uuid or 'no uuid'}):")
        for mig in gpu.mig_devices:
            lines.append(
                f"  MIG {mig.index} {mig.name or ''} {mig.uuid or ''} "
                f"{_mem(mig.memory_used, mig.memory_total)}"
            )
        if gpu.processes:
            rows: list[tuple[str, ...]] = [
                ("PID", "Process", "GPU memory", "Kernel", "Idle", "Environment", "Notebook")
            ]
            for proc in gpu.processes:
                rows.append(
                    (
                        str(proc.pid),
                        proc.name or "?",
                        "n/a" if proc.used_memory is None else human_bytes(proc.used_memory),
                        proc.kernel_id or "-",
                        _idle(kernels.get(proc.kernel_id or "")),
                        proc.environment_id or "-",
                        proc.notebook_path or "-",
                    )
                )
            lines.extend(_table(rows, indent="  "))
            warned = {p.kernel_id for p in gpu.processes if p.kernel_id in kernels}
            for kernel_id in sorted(warned):
                message = kernels[kernel_id].reclaim_message
                if message:
                    lines.append(f"  kernel {kernel_id}: {message}")
        else:
            lines.append("  no compute processes")
        if gpu.hidden_processes:
            lines.append(f"  ({gpu.hidden_processes} processes of other users not shown)")
    return "\n".join(lines)
