"""``jupyter gpuenv restore NOTEBOOK``: rebuild a notebook's recorded environment, re-point it.

The notebook's ``metadata.gpuenv`` record says what it ran in and may carry that
environment's ``--no-builds`` spec (c.GpuEnv.notebook_record_spec). When the environment
is absent here, the spec is created like ``jupyter gpuenv create`` does (the same engines:
a conda/mamba/micromamba CLI, else py-rattler), and the notebook's ``metadata.kernelspec``
and record are rewritten to name the new environment, so ``jupyter execute`` and
papermill run it. A Docker environment is not built: its image and digest are printed
with the ``docker pull`` that gets them (exit status 1, since nothing was restored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import nbformat

from ..config import GpuEnv
from ..environments.create.create import release
from ..environments.create.creator import EnvironmentCreator
from ..environments.create.restore import (
    ImageToPull,
    present_environment,
    repoint,
    restore_request,
)
from ..environments.fingerprint import environment_fingerprint
from ..environments.model import Environment
from ..errors import BadRequest
from ..provisioning.notebook_kernel import notebook_record
from .create_cmd import run_plan
from .notebook_cmd import kernelspec_installed, read_notebook
from .output import open_services


def register(subparsers: Any) -> None:
    restore = subparsers.add_parser(
        "restore",
        help="rebuild the environment a notebook recorded, when it is missing here",
        description="When the environment NOTEBOOK's metadata.gpuenv record names is absent "
        "on this machine, create it from the recorded --no-builds spec (conda, mamba or "
        "micromamba when installed, else py-rattler) and point the notebook's kernelspec "
        "at it. For a Docker environment, print its image, digest and the docker pull "
        "command.",
    )
    restore.add_argument("notebook", metavar="NOTEBOOK", help="path of an .ipynb file")
    where = restore.add_mutually_exclusive_group()
    where.add_argument("-n", "--name", help="create under this name (default: the recorded one)")
    where.add_argument("-p", "--prefix", help="create at this full path")
    restore.add_argument(
        "--cuda",
        metavar="VERSION",
        help="solve for this CUDA version (e.g. 12.4; 'none') instead of the host driver's",
    )
    restore.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    restore.add_argument("--json", action="store_true", help="print the finished job as JSON")
    restore.set_defaults(func=run_restore)


def run_restore(args: argparse.Namespace, config: GpuEnv) -> int:
    path = Path(args.notebook)
    notebook = read_notebook(path)
    record = notebook_record(notebook.metadata)
    with open_services(config) as services:
        environments = services.catalog.list_environments_sync()
        here = present_environment(record, environments, environment_fingerprint)
        if here is not None:
            print(f"{record.name} is on this machine: {here.display_name} ({here.id})")
            return _write(notebook, path, record, here)
        if record.kind == "docker":
            print(f"{record.name} is a Docker image that is not on this machine.")
            for line in ImageToPull.of(record).lines():
                print(line)
            return 1
        creator = EnvironmentCreator(services.catalog)
        plan = creator.plan(restore_request(record, args.name, args.prefix, args.cuda))
        try:
            _confirm(args.yes, f"Create {plan.target} from {path}'s recorded spec")
        except BaseException:
            release(plan)
            raise
        if record.kind == "venv":
            print(
                f"{record.name} was a venv; it comes back as a conda environment with the "
                "same Python and pip packages",
                file=sys.stderr,
            )
        status, env = run_plan(creator, plan, "restore", args.json)
    if status != 0 or env is None:
        return status or 1
    return _write(notebook, path, record, env)


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadRequest(f"{question}: confirm with --yes (no terminal to ask on)")
    if input(f"{question}? [y/N] ").strip().lower() not in ("y", "yes"):
        raise BadRequest("nothing restored")


def _write(notebook: nbformat.NotebookNode, path: Path, record: Any, env: Environment) -> int:
    repoint(notebook.metadata, record, env, environment_fingerprint(env))
    nbformat.write(notebook, str(path))
    print(f"{path} now runs in {env.display_name}: kernel {env.kernel_name!r}", file=sys.stderr)
    if not kernelspec_installed(env.kernel_name):
        print(
            f"note: run `jupyter gpuenv kernelspecs install` so jupyter execute and papermill "
            f"find {env.kernel_name}",
            file=sys.stderr,
        )
    return 0
