"""``jupyter gpuenv cluster node-config``: this host's GPUs as Swarm generic resources.

Swarm schedules GPUs it knows by id: each node's daemon.json lists them under
``node-generic-resources``. The ids come from NVML here (GPU UUIDs, or the MIG devices'
UUIDs of a GPU in MIG mode), so nobody copies UUIDs by hand. stdout is the daemon.json
snippet (redirect it into a file); the NVIDIA runtime setting that maps a task's assigned
ids to devices follows on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import GpuEnv
from ..kernel.gpu_snapshot import GpuSnapshot
from ..kernel.nvml import NvmlAdapter
from .output import print_json

NVIDIA_RUNTIME_CONFIG = "/etc/nvidia-container-runtime/config.toml"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="set up Docker Swarm nodes for GPU kernels (swarm mode)",
        description="Helpers for running kernels as Docker Swarm services.",
    )
    commands = parser.add_subparsers(dest="cluster_command", metavar="COMMAND")
    node = commands.add_parser(
        "node-config",
        help="print this host's daemon.json snippet: GPUs as Swarm generic resources",
        description="Print the daemon.json settings that declare this host's NVIDIA GPUs "
        "(MIG devices included) as Swarm generic resources and make the NVIDIA runtime "
        "the default, then the NVIDIA runtime setting that hands a task its GPUs.",
    )
    node.set_defaults(func=run)


def node_resources(snapshot: GpuSnapshot, kind: str) -> list[str]:
    """``<kind>=<uuid>`` per schedulable device: MIG devices of a GPU in MIG mode, else it."""
    resources: list[str] = []
    for gpu in snapshot.gpus:
        migs = [m.uuid for m in gpu.mig_devices if m.uuid]
        if gpu.mig_mode == "enabled" and migs:
            resources.extend(f"{kind}={uuid}" for uuid in migs)
        elif gpu.uuid:
            resources.append(f"{kind}={gpu.uuid}")
    return resources


def daemon_json(resources: list[str]) -> dict[str, Any]:
    return {
        "default-runtime": "nvidia",
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}},
        "node-generic-resources": resources,
    }


def runtime_note(kind: str) -> str:
    return (
        f"# Merge the JSON above into /etc/docker/daemon.json, and in {NVIDIA_RUNTIME_CONFIG}\n"
        "# set (top level) the variable through which Swarm hands a task its GPU ids:\n"
        f'swarm-resource = "DOCKER_RESOURCE_{kind}"\n'
        "# then restart Docker (systemctl restart docker) on this node."
    )


def run(args: argparse.Namespace, config: GpuEnv, nvml: Any = None) -> int:
    """Read the GPUs once; print the snippet, or why there is none. ``nvml``: tests."""
    if getattr(args, "cluster_command", None) != "node-config":
        print("usage: jupyter gpuenv cluster node-config", file=sys.stderr)
        return 2
    with NvmlAdapter(nvml) as adapter:
        snapshot = adapter.read()
    kind = config.swarm_gpu_resource
    resources = node_resources(snapshot, kind)
    if not resources:
        reason = snapshot.reason or "NVML lists no GPU"
        print(f"jupyter gpuenv: error: no NVIDIA GPU to declare: {reason}", file=sys.stderr)
        return 1
    print_json(daemon_json(resources))
    print(runtime_note(kind), file=sys.stderr)
    return 0
