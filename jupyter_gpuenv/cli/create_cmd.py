"""``jupyter gpuenv create``, ``clone`` and ``remove``: conda environments from environment.yml.

The same checks and engines as ``POST``/``DELETE /gpuenv/api/environments``
(environments/create/). A create prints which engine and CUDA version it used, and the
environment's id and kernel once the catalog lists it. Ctrl-C or SIGTERM leaves nothing.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from ..config import GpuEnv
from ..environments.create.create import CreatePlan, CreateRequest
from ..environments.create.creator import EnvironmentCreator
from ..environments.create.job import CreateJob
from ..environments.create.spec import read_environment_file
from ..environments.model import Environment
from ..errors import BadRequest
from .output import open_services, print_json
from .progress_bar import create_progress, on_terminal


def register(subparsers: Any) -> None:
    create = subparsers.add_parser(
        "create",
        help="create a conda environment from an environment.yml",
        description="Create a conda environment from FILE (like `conda env create -f`), with "
        "conda, mamba or micromamba when installed, else py-rattler; the environment is "
        "listed and gets a kernel when done.",
    )
    create.add_argument("-f", "--file", required=True, metavar="FILE", help="environment.yml")
    _target_options(create)
    create.set_defaults(func=run_create_cmd)

    clone = subparsers.add_parser(
        "clone",
        help="create a copy of an environment under a new name (export --no-builds, create)",
    )
    clone.add_argument("source", metavar="SRC", help="environment id or name (see `list`)")
    _target_options(clone)
    clone.set_defaults(func=run_clone_cmd)

    remove = subparsers.add_parser(
        "remove",
        help="remove a conda environment you own (never a base install)",
    )
    remove.add_argument("env", metavar="ENV", help="environment id, name or prefix")
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(func=run_remove_cmd)


def _target_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-n", "--name", help="name (created in the first writable conda envs folder)"
    )
    where.add_argument("-p", "--prefix", help="full path of the new environment")
    parser.add_argument(
        "--cuda",
        metavar="VERSION",
        help="solve for this CUDA version (e.g. 12.4; 'none': no CUDA) instead of the "
        "host driver's: GPU builds can be created on a CPU node",
    )
    parser.add_argument("--json", action="store_true", help="print the finished job as JSON")


def run_create_cmd(args: argparse.Namespace, config: GpuEnv) -> int:
    spec = read_environment_file(Path(args.file))
    request = CreateRequest(spec=spec, name=args.name, prefix=args.prefix, cuda=args.cuda)
    with open_services(config) as services:
        creator = EnvironmentCreator(services.catalog)
        return run_plan(creator, creator.plan(request), "create", args.json)[0]


def run_clone_cmd(args: argparse.Namespace, config: GpuEnv) -> int:
    if not (args.name or args.prefix):
        raise BadRequest("clone needs the new environment's -n NAME or -p PREFIX")
    with open_services(config) as services:
        creator = EnvironmentCreator(services.catalog)
        request = creator.clone_request(args.source, args.name, args.prefix, args.cuda)
        return run_plan(creator, creator.plan(request), "clone", args.json)[0]


def run_remove_cmd(args: argparse.Namespace, config: GpuEnv) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise BadRequest(f"remove {args.env}: confirm with --yes (no terminal to ask on)")
        answer = input(f"Remove the environment {args.env} and everything in it? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing removed.", file=sys.stderr)
            return 1
    with open_services(config) as services:
        prefix = EnvironmentCreator(services.catalog).remove(args.env)
    print(f"Removed {prefix}")
    return 0


def run_plan(
    creator: EnvironmentCreator, plan: CreatePlan, action: str, as_json: bool
) -> tuple[int, Environment | None]:
    """Run a planned create with a progress bar: (exit status, the environment if listed)."""
    job = CreateJob(action, name=plan.target.name, prefix=str(plan.target))
    for warning in plan.warnings:  # before solving, so a wrong CUDA can be stopped
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"Creating {plan.target} with {plan.engine} ({plan.cuda.describe()})",
        file=sys.stderr,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with create_progress(not as_json and on_terminal()) as listener:
            job.listeners.append(listener)
            env = creator.run(plan, job)
    except KeyboardInterrupt:
        if job.state == "running":  # interrupted once the environment was made: kept
            outcome = f"{plan.target} was made and is kept"
        else:
            outcome = "no environment was left behind"
        print(f"jupyter gpuenv: interrupted; {outcome}", file=sys.stderr)
        return 130, None
    finally:
        signal.signal(signal.SIGTERM, previous)
    for warning in job.warnings:
        if warning not in plan.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if as_json:
        print_json(job.to_json())
        return 0, env
    seconds = job.to_json()["seconds"]
    print(f"Created {plan.target} with {plan.engine} in {seconds:.1f} s")
    if env is not None:
        print(f"environment {env.id}: kernel {env.kernel_name!r} ({env.display_name})")
    return 0, env


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM cleans up as Ctrl-C does (the create removes what it made)."""
    raise KeyboardInterrupt
