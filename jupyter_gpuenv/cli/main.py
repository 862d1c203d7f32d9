"""Entry point of ``jupyter gpuenv`` / ``jupyter-gpuenv``.

Each subcommand lives in its own module exposing ``register(subparsers)``; the parsed
arguments carry ``func(args, config) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..config import GpuEnv
from ..config_check import load_checked_config
from ..errors import GpuEnvError

SUBCOMMAND_MODULES = (
    "jupyter_gpuenv.cli.environments_cmd",
    "jupyter_gpuenv.cli.create_cmd",
    "jupyter_gpuenv.cli.gpus_cmd",
    "jupyter_gpuenv.cli.doctor_cmd",
    "jupyter_gpuenv.cli.kernelspecs_cmd",
    "jupyter_gpuenv.cli.notebook_cmd",
    "jupyter_gpuenv.cli.restore_cmd",
    "jupyter_gpuenv.cli.cluster_cmd",
    "jupyter_gpuenv.broker.command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter gpuenv",
        description="GPU deep-learning environments for Jupyter: list, export, create, GPU "
        "status, compatibility doctor and kernelspecs.",
    )
    add_global_options(parser, default=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    for sub in _all_subparsers(parser):
        # Also after the subcommand (`jupyter gpuenv doctor --config FILE`); SUPPRESS
        # keeps a value given before the subcommand.
        add_global_options(sub, default=argparse.SUPPRESS)
    return parser


def add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="extra jupyter_server_config.py/.json read after the ones on the Jupyter "
        "config path (the same files `jupyter server` reads)",
    )


def _all_subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.append(sub)
                found.extend(_all_subparsers(sub))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        config: GpuEnv = load_checked_config(args.config)
        return int(args.func(args, config) or 0)
    except GpuEnvError as exc:
        print(f"jupyter gpuenv: error: {exc.message}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"jupyter gpuenv: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
