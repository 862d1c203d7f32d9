"""Listing speed on a host with hundreds of local images, PyTorch discovery on.

N distinct images (LABEL-only layers over the published-base test image, so each has its
own id and nothing is downloaded), a third of them PyTorch images by their
``PYTORCH_VERSION`` variable. Everything is real: the local Docker engine, the catalog,
its probe cache on disk (filled by a first listing).

Figures printed, each a median:
- one ``GET /images/json`` (the engine's image list): the floor of any Docker scan;
- a Docker scan with the image configs not yet known (a fresh process): one inspect per
  image, in parallel, and its ratio to the floor;
- a Docker scan with the configs known (every later scan of a process): target ratio to
  the floor <= 2, i.e. no inspect per image;
- a warm listing from the catalog's snapshot (what REST answers): target <= 1 ms;
- a fresh catalog's first listing with the cache on disk (``jupyter gpuenv list`` in a
  new process): no probe and no inspect runs; target ratio to the image list <= 3.

Run: ``python benchmarks/pytorch_discovery.py [--images 300] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyter_gpuenv.config import GpuEnv  # noqa: E402
from jupyter_gpuenv.docker.client import docker_client  # noqa: E402
from jupyter_gpuenv.environments.catalog import Catalog  # noqa: E402
from jupyter_gpuenv.environments.docker_images import image_candidates  # noqa: E402
from jupyter_gpuenv.environments.pytorch_images import ImageConfigs  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402

BENCH_REPO = f"gpuenv-bench/discovery-{os.getpid()}"


def make_images(client, base: str, count: int) -> list[str]:
    tags = []
    for i in range(count):
        env = f"ENV PYTORCH_VERSION=2.{i % 10}.0\n" if i % 3 == 0 else ""
        dockerfile = f'FROM {base}\n{env}LABEL bench.index="{i}"\n'
        tag = f"{BENCH_REPO}:{i:04d}"
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
        tags.append(tag)
    return tags


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    client = docker_client()
    base = ensure_image(client, "published-base")
    started = time.monotonic()
    tags = make_images(client, base, args.images)
    total = len(client.api.images())
    print(f"{len(tags)} images made in {time.monotonic() - started:.0f} s; {total} on the host")
    config = GpuEnv(
        conda_envs_dirs=[], venv_dirs=[], docker_label_discovery=False, probe_timeout=120
    )
    try:
        floor = median_ms(lambda: client.api.images(), args.runs)
        print(f"image list (GET /images/json): {floor:.1f} ms")

        cold = median_ms(lambda: image_candidates(client, config, ImageConfigs()), args.runs)
        print(f"Docker scan, configs unknown: {cold:.1f} ms; ratio to the list {cold / floor:.1f}")

        known = ImageConfigs()
        found = image_candidates(client, config, known)
        ours = [c for c in found if c.location["image"].startswith(BENCH_REPO)]
        warm = median_ms(lambda: image_candidates(client, config, known), args.runs)
        print(
            f"Docker scan, configs known: {warm:.1f} ms; ratio to the list {warm / floor:.2f} "
            f"(target <= 2); {len(ours)} bench images listed as PyTorch environments"
        )

        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "catalog.json"
            first = Catalog(config, cache_path=cache)
            t0 = time.perf_counter()
            first.list_environments_sync()
            print(
                f"first listing ever (probes {first.probe_counter.docker} images): "
                f"{time.perf_counter() - t0:.1f} s"
            )
            snapshot_ms = median_ms(lambda: first.snapshot_sync().listing_json(), 200)
            print(f"warm listing from the snapshot: {snapshot_ms:.3f} ms (target <= 1 ms)")
            first.stop()

            fresh_runs, inspected = [], []
            for _ in range(args.runs):
                fresh = Catalog(config, cache_path=cache)
                t0 = time.perf_counter()
                fresh.list_environments_sync()
                fresh_runs.append((time.perf_counter() - t0) * 1000)
                assert fresh.probe_counter.total == 0, "a warm cache must not probe"
                inspected.append(fresh.sources.image_configs.inspected)
                fresh.stop()
            new_process = statistics.median(fresh_runs)
            print(
                f"new process, cache on disk: {new_process:.1f} ms, no probe, "
                f"{max(inspected)} inspects; ratio to the image list {new_process / floor:.2f} "
                f"(target <= 3), to the cold scan {new_process / cold:.2f}"
            )
    finally:
        for tag in tags:
            client.images.remove(tag, force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
