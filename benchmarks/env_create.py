"""Environment create time through our path vs py-rattler called directly (issue 27).

Goal: ``jupyter gpuenv create``'s engine path within 1.1 x rattler's own solve + install
of the same spec from the same channel.

* ours: ``plan_create`` (file, target, CUDA and engine checks) + ``run_create`` (solve
  with the chosen ``__cuda``, install into a hidden sibling with the final prefix written
  into the files, ``conda-meta/state`` and ``history``, the rename into place,
  environments.txt) — what the CLI and the REST job run before the catalog re-scan;
* baseline: ``rattler.solve`` with the same channel, specs and virtual packages, then
  ``rattler.install`` straight into a prefix.

The channel is the test session's (tests/support/conda_channel.py: python linked to this
machine's python3.11, pip from its wheel — about a thousand files to link — and the
demo packages); both variants share one package cache, warmed by a first run of each
that is not counted. Runs alternate; medians are compared. The catalog re-scan that
follows a create (probing the new environment's python) is printed on its own.
Run: ``python benchmarks/env_create.py [--runs 9]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import rattler  # noqa: E402
import yaml  # noqa: E402

from jupyter_gpuenv.config import GpuEnv  # noqa: E402
from jupyter_gpuenv.environments.catalog import Catalog  # noqa: E402
from jupyter_gpuenv.environments.create.create import (  # noqa: E402
    CreateRequest,
    plan_create,
    run_create,
)
from jupyter_gpuenv.environments.create.job import CreateJob  # noqa: E402
from jupyter_gpuenv.environments.create.spec import read_environment_file  # noqa: E402
from tests.support.conda_channel import build_channel, demo_packages, ensure_wheelhouse  # noqa: E402

SPECS = ["python", "pip", "gpuenv-demo", "gpuenv-tool"]
CUDA = "12.4"
GOAL = 1.1


def ours(config: GpuEnv, yml: Path, name: str) -> float:
    started = time.perf_counter()
    plan = plan_create(config, CreateRequest(read_environment_file(yml), name=name, cuda=CUDA))
    run_create(plan, CreateJob("create"))
    return time.perf_counter() - started


def direct(channel: str, prefix: Path) -> float:
    started = time.perf_counter()

    async def work() -> None:
        records = await rattler.solve(
            [channel],
            [rattler.MatchSpec(s) for s in SPECS],
            virtual_packages=rattler.VirtualPackage.detect(
                rattler.VirtualPackageOverrides(cuda=rattler.Override.string(CUDA))
            ),
        )
        await rattler.install(records, prefix, show_progress=False)

    asyncio.run(work())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpuenv-bench-create-") as tmp:
        root = Path(tmp)
        os.environ["HOME"] = str(root / "home")  # one package cache for both, ours alone
        (root / "home").mkdir()
        channel = build_channel(root / "channel", demo_packages(ensure_wheelhouse()))
        envs = root / "envs"
        envs.mkdir()
        yml = root / "environment.yml"
        data = {"name": "x", "channels": [channel.as_uri()], "dependencies": SPECS}
        yml.write_text(yaml.safe_dump(data))
        config = GpuEnv(
            conda_envs_dirs=[str(envs)], venv_dirs=[], environment_create_engine="rattler"
        )
        mine: list[float] = []
        base: list[float] = []
        for run in range(args.runs + 1):
            a = ours(config, yml, f"ours{run}")
            b = direct(channel.as_uri(), envs / f"direct{run}")
            if run:  # the first run of each warms the package cache
                mine.append(a)
                base.append(b)
            for name in (f"ours{run}", f"direct{run}"):
                shutil.rmtree(envs / name)
        catalog = Catalog(
            GpuEnv(conda_envs_dirs=[str(envs)], venv_dirs=[], docker_label_discovery=False),
            cache_path=root / "cache.json",
        )
        catalog.list_environments_sync()
        ours(config, yml, "listed")
        started = time.perf_counter()
        catalog.snapshot_sync(refresh=True)
        rescan = time.perf_counter() - started
        catalog.stop()
    ratio = statistics.median(mine) / statistics.median(base)
    verdict = "meets" if ratio <= GOAL else "misses"
    print(f"{os.cpu_count()} CPUs; {len(SPECS)} specs, runs per variant: {args.runs}")
    print(
        f"create: ours median {statistics.median(mine) * 1000:.0f} ms "
        f"(min {min(mine) * 1000:.0f}), rattler directly median "
        f"{statistics.median(base) * 1000:.0f} ms (min {min(base) * 1000:.0f}); "
        f"ratio {ratio:.2f} ({verdict} the {GOAL} x goal)"
    )
    print(f"catalog re-scan after a create (probes the new environment): {rescan * 1000:.0f} ms")


if __name__ == "__main__":
    main()
