"""``jupyter gpuenv broker [--config FILE]``: run the kernel broker (a JupyterHub service)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run the kernel broker, a JupyterHub service (see docs/jupyterhub.md)",
        description="Run the kernel broker: the JupyterHub service that alone holds Docker "
        "and starts each Hub user's kernels under the admin's c.GpuEnvBroker rules.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, _config: Any) -> int:
    from .app import BrokerApp

    argv = [f"--log-level={args.log_level}"]
    if getattr(args, "config", None):
        argv.append(f"--config={args.config}")
    BrokerApp.launch_instance(argv)
    return 0
