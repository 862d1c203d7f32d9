"""``jupyter gpuenv kernelspecs install|remove|list``: the server's kernelspecs, on disk.

Kernelspecs that exist only inside a running server are invisible to nbclient,
papermill, ``jupyter execute`` and ``jupyter console``. ``install`` writes the very spec
the server lists (same name, display name, provisioner and environment id, and logo);
the provisioners then read ``c.GpuEnv`` from the config files when those tools start
them. ``list`` says whether an installed spec is stale (the environment changed or is
gone); ``remove`` touches only ours.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from ..config import GpuEnv
from ..environments.catalog import Catalog
from ..environments.model import KERNEL_NAME_PREFIX, Environment, kernel_name_for
from ..errors import BadRequest
from ..provisioning.kernelspecs import RESOURCES, has_kernel, kernelspec_dict
from .output import open_services, print_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "kernelspecs",
        help="install, list or remove on-disk kernelspecs of the environments",
        description="Write the server's kernelspecs to disk so nbclient, papermill, "
        "jupyter execute and jupyter console can start kernels in the environments.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="write (or update) kernelspecs")
    install.add_argument("envs", nargs="*", metavar="ENV", help="ids or names (default: all)")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user (the default)")
    where.add_argument("--sys-prefix", action="store_true", help=f"into {sys.prefix}")
    where.add_argument("--prefix", metavar="P", help="into the prefix P")
    install.set_defaults(func=run_install)
    remove = actions.add_parser("remove", help="remove installed gpuenv kernelspecs")
    remove.add_argument("envs", nargs="*", metavar="ENV", help="ids, names or kernel names")
    remove.set_defaults(func=run_remove)
    listing = actions.add_parser("list", help="installed gpuenv kernelspecs and whether stale")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)


def spec_fingerprint(spec: dict[str, Any]) -> str:
    """What changes when the environment's kernelspec would change."""
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def on_disk_spec(env: Environment) -> dict[str, Any]:
    spec = kernelspec_dict(env)
    spec["metadata"]["gpuenv"]["spec_fingerprint"] = spec_fingerprint(kernelspec_dict(env))
    return spec


def _chosen(catalog: Catalog, names: list[str]) -> list[Environment]:
    if not names:
        return [env for env in catalog.list_environments_sync() if has_kernel(env)]
    chosen = []
    for name in names:
        env = catalog.resolve_sync(name)
        if not has_kernel(env):
            raise BadRequest(f"{env.name}: no kernel can run there: {'; '.join(env.problems)}")
        chosen.append(env)
    return chosen


def run_install(args: argparse.Namespace, config: GpuEnv) -> int:
    with open_services(config) as services:
        catalog = services.catalog
        envs = _chosen(catalog, args.envs)
    ksm = KernelSpecManager()
    for env in envs:
        name = kernel_name_for(env.id)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp, name)
            shutil.copytree(RESOURCES, folder)
            (folder / "kernel.json").write_text(json.dumps(on_disk_spec(env), indent=1))
            dest = ksm.install_kernel_spec(
                str(folder),
                name,
                user=not (args.sys_prefix or args.prefix),
                prefix=sys.prefix if args.sys_prefix else args.prefix,
            )
        print(f"{name}: {env.display_name} -> {dest}")
    if not envs:
        print("No environment can run a kernel; see `jupyter gpuenv list`.")
    return 0


def installed() -> dict[str, tuple[str, dict[str, Any]]]:
    """Our kernelspecs on disk: name -> (folder, kernel.json)."""
    found = {}
    for name, folder in KernelSpecManager().find_kernel_specs().items():
        if not name.startswith(KERNEL_NAME_PREFIX):
            continue
        try:
            spec = json.loads(Path(folder, "kernel.json").read_text())
        except (OSError, ValueError):
            continue
        if "gpuenv" in (spec.get("metadata") or {}):
            found[name] = (folder, spec)
    return found


def run_remove(args: argparse.Namespace, config: GpuEnv) -> int:
    ours = installed()
    wanted = set(ours)
    if args.envs:
        with open_services(config) as services:
            catalog = services.catalog
            wanted = set()
            for ref in args.envs:
                if ref in ours:
                    wanted.add(ref)
                    continue
                wanted.add(kernel_name_for(catalog.resolve_sync(ref).id))
    for name in sorted(wanted & set(ours)):
        shutil.rmtree(ours[name][0])
        print(f"removed {name} ({ours[name][0]})")
    return 0


def run_list(args: argparse.Namespace, config: GpuEnv) -> int:
    with open_services(config) as services:
        catalog = services.catalog
        current = {kernel_name_for(e.id): e for e in catalog.list_environments_sync()}
    rows = []
    for name, (folder, spec) in sorted(installed().items()):
        env = current.get(name)
        recorded = spec["metadata"]["gpuenv"].get("spec_fingerprint")
        if env is None:
            status = "gone"
        elif recorded == spec_fingerprint(kernelspec_dict(env)):
            status = "current"
        else:
            status = "stale"
        rows.append(
            {
                "name": name,
                "display_name": spec.get("display_name"),
                "status": status,
                "path": folder,
            }
        )
    if args.json:
        print_json({"kernelspecs": rows})
    elif not rows:
        print("No gpuenv kernelspecs installed (`jupyter gpuenv kernelspecs install`).")
    for row in rows if not args.json else []:
        print(f"{row['name']:<48} {row['status']:<8} {row['display_name']}  [{row['path']}]")
    return 0
