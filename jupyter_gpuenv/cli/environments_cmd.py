"""``jupyter gpuenv list`` and ``jupyter gpuenv export``: the server's catalog, from a shell.

Both read the same configuration as ``jupyter server`` and the same on-disk probe cache,
so after a server (or an earlier command) has probed, they answer without probing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import GpuEnv
from ..environments.model import Environment
from ..errors import BadRequest
from .notebook_cmd import recorded_environment
from .output import open_services, print_json
from .progress_bar import on_terminal, scan_progress_bar

COLUMNS = ("ID", "KIND", "PYTHON", "PYTORCH", "CUDA", "IPYKERNEL", "DISPLAY NAME")


def register(subparsers: Any) -> None:
    listing = subparsers.add_parser(
        "list",
        help="list every environment (conda, venv, docker) with its versions",
        description="List the environments a kernel can run in, with the Python, PyTorch "
        "and CUDA versions probed inside each, and what keeps any of them from working.",
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help='print {"environments": [...], "problems": [...]} as the REST API does',
    )
    listing.add_argument(
        "--refresh", action="store_true", help="re-probe transient failures before listing"
    )
    listing.set_defaults(func=run_list)

    export = subparsers.add_parser(
        "export",
        help="write an environment as environment.yml (like conda env export)",
        description="Write ENV as an environment.yml that conda accepts: conda prefixes "
        "as `conda env export` writes them, venvs and images with their Python pinned and "
        "their packages under pip:.",
    )
    export.add_argument("env", metavar="ENV", nargs="?", help="environment id or name (see `list`)")
    export.add_argument(
        "--notebook",
        metavar="NOTEBOOK",
        help="instead of ENV: the environment NOTEBOOK was saved with (its metadata.gpuenv), "
        "when it exists here",
    )
    export.add_argument(
        "--no-builds", action="store_true", help="omit build strings (name=version)"
    )
    export.add_argument(
        "--from-history",
        action="store_true",
        help="only the packages explicitly asked for (conda history / pip REQUESTED)",
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    export.set_defaults(func=run_export)


def run_list(args: argparse.Namespace, config: GpuEnv) -> int:
    with open_services(config) as services:
        with scan_progress_bar(not args.json and on_terminal()) as report:
            snapshot = services.catalog.snapshot_sync(refresh=args.refresh, on_progress=report)
    if args.json:
        print_json(json.loads(snapshot.listing_json()))
    else:
        print(format_table(snapshot.environments))
        for problem in snapshot.problems:
            print(f"invalid setting: {problem['message']}")
    return 0


def run_export(args: argparse.Namespace, config: GpuEnv) -> int:
    if bool(args.env) == bool(args.notebook):
        raise BadRequest("export needs either ENV or --notebook NOTEBOOK (not both)")
    with open_services(config) as services:
        catalog = services.catalog
        env_id = args.env
        if args.notebook:
            envs = catalog.list_environments_sync()
            env_id = recorded_environment(Path(args.notebook), envs).id
        _filename, text = catalog.export_sync(
            env_id, no_builds=args.no_builds, from_history=args.from_history
        )
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def format_table(envs: list[Environment]) -> str:
    """A plain table, then each environment's problems indented below it."""
    if not envs:
        return (
            "No environments found. See `c.GpuEnv.conda_envs_dirs`, `venv_dirs` and "
            "`docker_images` in the README."
        )
    rows = [COLUMNS]
    for env in envs:
        rows.append(
            (
                env.id,
                env.kind,
                env.python_version or "-",
                env.torch_version or "-",
                env.cuda_version or ("CPU" if env.torch_version else "-"),
                "yes" if env.ipykernel else "no",
                env.display_name,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    problems = [(env, p) for env in envs for p in env.problems]
    if problems:
        lines.append("")
        lines.append("Problems:")
        lines += [f"  {env.id}: {problem}" for env, problem in problems]
    return "\n".join(lines)
