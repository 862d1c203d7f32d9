"""``jupyter gpuenv resolve NOTEBOOK``: this machine's kernel for a notebook's recorded environment.

The notebook's ``metadata.gpuenv`` (written by the server when it was saved) says what it
ran in; kernel names do not travel between machines, so ``--write`` puts this machine's
kernel into ``metadata.kernelspec``, and ``jupyter execute`` or papermill run it as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import nbformat

from ..config import GpuEnv
from ..environments.model import Environment
from ..errors import BadRequest, EnvironmentNotFound
from ..provisioning.notebook_kernel import Resolution, notebook_record, resolve_record
from .output import open_services, print_json


def register(subparsers: Any) -> None:
    resolve = subparsers.add_parser(
        "resolve",
        help="print the kernel of this machine that runs a notebook's recorded environment",
        description="Find this machine's environment matching the metadata.gpuenv record "
        "of NOTEBOOK, by the first rule that holds: the same image id, the same packages "
        "(fingerprint), the same kind and name with the same PyTorch and CUDA, the same "
        "PyTorch and CUDA (major.minor). Prints the kernel name; exits 1 saying what is "
        "missing when nothing matches.",
    )
    resolve.add_argument("notebook", metavar="NOTEBOOK", help="path of an .ipynb file")
    resolve.add_argument(
        "--write",
        action="store_true",
        help="set the notebook's metadata.kernelspec to that kernel (for jupyter execute, "
        "papermill)",
    )
    resolve.add_argument("--json", action="store_true", help="print the REST API's answer")
    resolve.set_defaults(func=run_resolve)


def run_resolve(args: argparse.Namespace, config: GpuEnv) -> int:
    path = Path(args.notebook)
    notebook = read_notebook(path)
    record = notebook_record(notebook.metadata)
    with open_services(config) as services:
        resolution = resolve_record(record, services.catalog.list_environments_sync())
    if args.write:
        notebook.metadata["kernelspec"] = resolution.kernelspec()
        nbformat.write(notebook, str(path))
    if args.json:
        print_json({"path": str(path), **resolution.to_json()})
    else:
        print(resolution.match.environment.kernel_name)
    print(describe(resolution, args.write, path), file=sys.stderr)
    kernel_name = resolution.match.environment.kernel_name
    if not kernelspec_installed(kernel_name):
        print(
            f"note: {kernel_name} is not installed as a kernelspec, so jupyter execute and "
            "papermill cannot start it yet: run `jupyter gpuenv kernelspecs install`",
            file=sys.stderr,
        )
    return 0


def kernelspec_installed(kernel_name: str) -> bool:
    """Whether plain jupyter_client tools (jupyter execute, papermill) find this kernel."""
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        return kernel_name in KernelSpecManager().find_kernel_specs()
    except Exception:  # an unreadable kernels folder: say nothing rather than fail
        return True


def describe(resolution: Resolution, written: bool, path: Path) -> str:
    match = resolution.match
    lines = [f"{match.environment.display_name}: matched by {match.to_json()['rule_text']}"]
    if not match.exact:
        lines[0] += " (not the same packages)"
    mismatch = resolution.to_json()["mismatch"]
    if mismatch:
        lines.append(mismatch)
    if written:
        lines.append(f"wrote metadata.kernelspec of {path}")
    return "\n".join(lines)


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path``; a clear error when it is missing or not a notebook."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvironmentNotFound(f"no such notebook: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read {path}: {exc}") from None
    try:
        notebook = nbformat.reads(text, as_version=4)
    except (ValueError, json.JSONDecodeError, nbformat.reader.NotJSONError) as exc:
        raise BadRequest(f"{path} is not a notebook: {exc}") from None
    if not isinstance(notebook.get("metadata"), dict):
        raise BadRequest(f"{path} is not a notebook: it has no metadata")
    return notebook


def recorded_environment(path: Path, environments: list[Environment]) -> Environment:
    """The environment a notebook recorded, when it exists here (the same id or content)."""
    record = notebook_record(read_notebook(path).metadata)
    resolution = resolve_record(record, environments)
    env = resolution.match.environment
    if resolution.match.exact or env.id == record.environment_id:
        return env
    raise EnvironmentNotFound(
        f"the environment {path} was saved with ({record.display_name}) does not exist "
        f"here; {env.display_name} ({env.id}) only has the same PyTorch and CUDA"
    )
