"""``jupyter gpuenv doctor``: will each environment's PyTorch/CUDA build run on this host?

Exit status: 0 when no environment has an error (warnings included), 1 when at least one
has, when a setting of the configuration is invalid, or when the command itself fails
(with a message on stderr), so scripts and CI can gate on it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import GpuEnv
from ..doctor.report import (
    doctor_report,
    has_errors,
    hypothetical_host_or_none,
    select_environments,
)
from .output import open_services, print_json

MARKS = {"ok": "ok", "warning": "WARNING", "error": "ERROR"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check each environment's CUDA build against the driver and GPUs",
        description="Check each environment's PyTorch/CUDA build against the NVIDIA driver, "
        "the GPUs' compute capability, cuDNN and Docker's NVIDIA runtime. Without "
        "--driver-version/--compute-capability the real host is used; with them, a "
        "hypothetical host (to plan a cluster). Invalid settings of the configuration "
        "are listed first. Exit status 1 when any environment has an error or a setting "
        "is invalid.",
    )
    parser.add_argument(
        "env", nargs="?", metavar="ENV", help="id or name of one environment (default: all)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--driver-version", metavar="X", help="evaluate against this driver, e.g. 535.54.03"
    )
    parser.add_argument(
        "--compute-capability",
        metavar="X.Y",
        help="evaluate against a GPU of this compute capability, e.g. 8.6",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, config: GpuEnv) -> int:
    host = hypothetical_host_or_none(args.driver_version, args.compute_capability)
    with open_services(config) as services:
        if host is None:
            host = services.host()
        envs = select_environments(services.catalog.list_environments_sync(), args.env)
    report = doctor_report(envs, host, config)
    if args.json:
        print_json(report)
    else:
        print(_printable(format_report(report)))
    return 1 if has_errors(report) else 0


def format_report(report: dict[str, Any]) -> str:
    """The readable form: the host, invalid settings, then one block per environment."""
    lines = [describe_host(report["host"]), ""]
    problems = report.get("problems") or []
    if problems:
        count = len(problems)
        lines.append(f"Configuration: {count} invalid setting{'s' if count != 1 else ''}")
        for problem in problems:
            lines.append(f"  {MARKS['error']:<7} {problem['setting']} = {problem['value']}")
            lines.append(f"          expected {problem['expected']}; {problem['consequence']}")
        lines.append("")
    counts = {"ok": 0, "warning": 0, "error": 0}
    for entry in report["environments"]:
        counts[entry["verdict"]] += 1
        lines.append(f"{entry['name']} ({entry['kind']}, {entry['id']}): {MARKS[entry['verdict']]}")
        for finding in entry["findings"]:
            lines.append(f"  {MARKS[finding['severity']]:<7} {finding['message']}")
            if finding["fix"]:
                lines.append(f"          fix: {finding['fix']}")
        lines.append("")
    if not report["environments"]:
        lines.append("No environments found.")
    else:
        total = len(report["environments"])
        lines.append(
            f"{total} environment{'s' if total != 1 else ''}: {counts['error']} with errors, "
            f"{counts['warning']} with warnings, {counts['ok']} ok."
        )
    return "\n".join(lines)


def _printable(text: str) -> str:
    """Keep the report printable on a terminal that cannot encode ≥ and ≤."""
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except UnicodeEncodeError:
        text = text.replace("≥", ">=").replace("≤", "<=")
    return text


def describe_host(host: dict[str, Any]) -> str:
    title = "Hypothetical host" if host["hypothetical"] else "Host"
    parts = []
    if host["driver_version"]:
        cuda = f" (CUDA {host['cuda_driver_version']})" if host["cuda_driver_version"] else ""
        parts.append(f"driver {host['driver_version']}{cuda}")
    for gpu in host["gpus"]:
        name = f" {gpu['name']}" if gpu["name"] and not host["hypothetical"] else ""
        parts.append(f"GPU {gpu['index']}{name}, compute capability {gpu['compute_capability']}")
    if not host["has_gpu"]:
        reason = f" ({host['reason']})" if host["reason"] else ""
        parts.append(f"no NVIDIA GPU{reason}")
    runtime = host["docker_nvidia_runtime"]
    if runtime is not None:
        parts.append("Docker NVIDIA runtime: " + ("yes" if runtime else "no"))
    return f"{title}: " + "; ".join(parts or ["nothing known"])
