"""Catalog listing speed with 50 conda envs and 5 Docker images (issue: environment catalog).

Targets: warm listing (REST, server-side) <= 5 ms; cold listing <= 1.5 x the slowest
single probe. Everything is real: conda prefixes laid out by the test harness (each with
its own working python), five distinct images derived from the test images (LABEL-only
layers, so each has its own image id and is probed on its own), a real ``jupyter
server`` for the REST figures.

Figures printed:
- each probe alone (sequential): the slowest one is the cold target's yardstick;
- cold listing in-process (empty probe cache), median of runs, and its ratio;
- warm listing, handler path in-process (catalog snapshot + JSON body);
- warm REST listing server-side, from the server's own per-request timing
  (tornado's request_time in jupyter_server's access log), and the client round trip.

Run: ``python benchmarks/catalog_listing.py [--runs 3] [--requests 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyter_gpuenv.config import GpuEnv  # noqa: E402
from jupyter_gpuenv.docker.client import docker_client  # noqa: E402
from jupyter_gpuenv.environments.catalog import Catalog  # noqa: E402
from jupyter_gpuenv.environments.probe import probe_image, probe_prefix  # noqa: E402
from tests.support.conda_prefix import make_conda_prefix  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402

N_CONDA = 50
IMAGE_BASES = ["torch-cpu", "torch-cpu", "python-kernel", "python-kernel", "bare-python"]
BENCH_REPO = f"gpuenv-bench/catalog-{os.getpid()}"
TORCH_CU121 = {"version": "2.9.0+cu121", "cuda": "12.1", "cudnn": 90100}
TORCH_CPU = {"version": "2.9.0+cpu"}
SERVER_LINE = re.compile(r"200 GET /gpuenv/api/environments \(\S+\) ([0-9.]+)ms")


def make_envs(folder: Path) -> list[Path]:
    """50 conda prefixes: 20 with a CUDA torch build, 10 with a CPU build, 20 without torch."""
    prefixes = []
    for i in range(N_CONDA):
        torch = TORCH_CU121 if i < 20 else TORCH_CPU if i < 30 else None
        prefixes.append(make_conda_prefix(folder / f"env{i:02d}", torch=torch))
    return prefixes


def make_images(client, distinct: bool) -> dict[str, str]:
    """Five docker_images entries made from the test images.

    ``distinct``: LABEL-only children (no new layers, each its own image id, so five
    probes); otherwise re-tags (entries sharing an image id share one probe, as the
    catalog caches by image id).
    """
    entries = {}
    for i, base in enumerate(IMAGE_BASES):
        parent = ensure_image(client, base)
        tag = f"{BENCH_REPO}-{i}:latest"
        if distinct:
            dockerfile = f'FROM {parent}\nLABEL org.jupyter.gpuenv.bench="{i}"\n'
            client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
        else:
            client.images.get(parent).tag(tag)
        entries[f"img{i}-{base}"] = tag
    return entries


def config_for(envs_dir: Path, images: dict[str, str]) -> GpuEnv:
    return GpuEnv(
        conda_envs_dirs=[str(envs_dir)],
        venv_dirs=[],
        docker_images=images,
        docker_label_discovery=False,
    )


def single_probes(prefixes: list[Path], images: dict[str, str], client) -> list[tuple]:
    """Each probe alone, one after the other: (seconds, what)."""
    timings = []
    for prefix in prefixes:
        started = time.perf_counter()
        result = probe_prefix(str(prefix / "bin" / "python"), str(prefix), 60)
        timings.append((time.perf_counter() - started, f"conda {prefix.name}", result))
    for name, tag in images.items():
        image_id = client.images.get(tag).id
        probe_image(client, image_id, None, 120)  # first start of an image warms its layers
        runs = []
        for _ in range(3):  # the median of three: this machine's cores are shared
            started = time.perf_counter()
            result = probe_image(client, image_id, None, 120)
            runs.append(time.perf_counter() - started)
        timings.append((statistics.median(runs), f"docker {name}", result))
    for _, what, result in timings:
        assert not result.problems, (what, result.problems)
    return timings


def slowest_probe_fn(what: str, prefixes: list[Path], images: dict[str, str], client):
    """A callable timing the probe named ``what`` once, alone."""
    kind, name = what.split(" ", 1)

    def run() -> float:
        started = time.perf_counter()
        if kind == "docker":
            probe_image(client, client.images.get(images[name.split(" ")[0]]).id, None, 120)
        else:
            prefix = next(p for p in prefixes if p.name == name)
            probe_prefix(str(prefix / "bin" / "python"), str(prefix), 60)
        return time.perf_counter() - started

    return run


def cold_listing(config: GpuEnv, cache: Path) -> tuple[float, int, int]:
    catalog = Catalog(config, cache_path=cache)
    try:
        started = time.perf_counter()
        envs = catalog.list_environments_sync()
        elapsed = time.perf_counter() - started
        probes = catalog.probe_counter.total
        catalog.list_environments_sync()
        assert catalog.probe_counter.total == probes, "a second listing must not probe"
        assert not [e.problems for e in envs if e.problems], [e.problems for e in envs]
        return elapsed, len(envs), probes
    finally:
        catalog.stop()


def warm_in_process(config: GpuEnv, cache: Path, requests: int) -> list[float]:
    """The REST handler's work: await the snapshot, produce the JSON body."""
    catalog = Catalog(config, cache_path=cache)

    async def run() -> list[float]:
        await catalog.snapshot()
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            snapshot = await catalog.snapshot()
            body = snapshot.listing_json()
            times.append(time.perf_counter() - started)
            assert body
        return times

    try:
        return asyncio.run(run())
    finally:
        catalog.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def warm_over_http(config_file: Path, data_dir: Path, requests: int) -> tuple[list, list, float]:
    """A real `jupyter server`; server-side times from its access log, plus round trips."""
    port, token = free_port(), "bench-token"
    log_path = data_dir / "server.log"
    env = dict(os.environ, JUPYTER_DATA_DIR=str(data_dir), JUPYTER_RUNTIME_DIR=str(data_dir))
    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "jupyter_server", f"--config={config_file}",
                f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
                "--ServerApp.open_browser=False", "--log-level=DEBUG", "--allow-root",
                "--GpuEnvExtension.log_level=DEBUG",  # its handlers' access-log lines
                f"--ServerApp.root_dir={data_dir}",
            ],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/gpuenv/api/environments"
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        deadline = time.monotonic() + 120
        first = None
        while first is None:
            try:
                started = time.perf_counter()
                with urllib.request.urlopen(request, timeout=300) as response:
                    count = len(json.loads(response.read())["environments"])
                first = time.perf_counter() - started
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert count == N_CONDA + len(IMAGE_BASES), count
        round_trips = []
        for _ in range(requests):
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            round_trips.append(time.perf_counter() - started)
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=60)
    server_ms = [float(m) for m in SERVER_LINE.findall(log_path.read_text(encoding="utf-8"))]
    return server_ms[1:], round_trips, first  # the first request did the cold scan


def describe(values_ms: list[float]) -> str:
    ordered = sorted(values_ms)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"median {statistics.median(ordered):.3f} ms, p95 {p95:.3f} ms, "
        f"max {ordered[-1]:.3f} ms (n={len(ordered)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cold listings to time")
    parser.add_argument("--requests", type=int, default=300, help="warm requests to time")
    parser.add_argument(
        "--distinct-images",
        action="store_true",
        help="five distinct image ids (five docker probes) instead of re-tagged test images",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpuenv-bench-"))
    client = docker_client()
    images: dict[str, str] = {}
    try:
        started = time.perf_counter()
        envs_dir = work / "envs"
        prefixes = make_envs(envs_dir)
        images = make_images(client, args.distinct_images)
        config = config_for(envs_dir, images)
        ids = {client.images.get(tag).id for tag in images.values()}
        print(
            f"setup: {N_CONDA} conda envs + {len(images)} docker_images entries "
            f"({len(ids)} distinct image ids) in {time.perf_counter() - started:.1f} s "
            f"(cpus: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})"
        )

        timings = single_probes(prefixes, images, client)
        slowest, slowest_what, _ = max(timings, key=lambda t: t[0])
        conda_times = [t for t, what, _ in timings if what.startswith("conda")]
        docker_times = [t for t, what, _ in timings if what.startswith("docker")]
        print(
            f"single probes: conda median {statistics.median(conda_times) * 1000:.0f} ms "
            f"(max {max(conda_times) * 1000:.0f} ms), docker median "
            f"{statistics.median(docker_times):.2f} s; slowest {slowest:.2f} s ({slowest_what})"
        )

        # The cores are shared with other work, so each cold listing is paired with a
        # fresh timing of the slowest probe right before it, and the ratio is per pair.
        slowest_probe = slowest_probe_fn(slowest_what, prefixes, images, client)
        pairs = []
        for run in range(args.runs):
            alone = slowest_probe()
            elapsed, count, probes = cold_listing(config, work / f"cold-{run}.json")
            pairs.append((elapsed, alone))
            print(
                f"run {run + 1}: slowest probe alone {alone:.2f} s, cold listing "
                f"{elapsed:.2f} s ({count} environments, {probes} probes), "
                f"ratio {elapsed / alone:.2f}"
            )
        cold = statistics.median(p[0] for p in pairs)
        ratio = statistics.median(p[0] / p[1] for p in pairs)
        print(
            f"COLD listing: median {cold:.2f} s; median ratio to the slowest single probe "
            f"{ratio:.2f} (target <= 1.5)"
        )
        slowest = statistics.median(p[1] for p in pairs)

        warm_cache = work / "cold-0.json"
        in_process = [t * 1000 for t in warm_in_process(config, warm_cache, args.requests)]
        print(f"WARM listing, handler path in-process: {describe(in_process)}")

        config_file = work / "jupyter_server_config.py"
        config_file.write_text(
            "c.ServerApp.jpserver_extensions = {'jupyter_gpuenv': True}\n"
            f"c.GpuEnv.conda_envs_dirs = [{str(envs_dir)!r}]\n"
            "c.GpuEnv.venv_dirs = []\n"
            f"c.GpuEnv.docker_images = {images!r}\n"
            "c.GpuEnv.docker_label_discovery = False\n",
            encoding="utf-8",
        )
        data_dir = work / "server-data"
        data_dir.mkdir()
        server_ms, round_trips, first = warm_over_http(config_file, data_dir, args.requests)
        print(
            f"first REST request (cold scan inside the server): {first:.2f} s "
            f"= {first / slowest:.2f} x slowest single probe"
        )
        print(
            f"WARM REST listing, server-side (jupyter_server request time): "
            f"{describe(server_ms)}; ratio to 5 ms target: "
            f"{statistics.median(server_ms) / 5:.2f}"
        )
        print(
            f"warm REST round trip over HTTP (client side): "
            f"{describe([t * 1000 for t in round_trips])}"
        )
        return 0
    finally:
        for tag in images.values():
            try:
                client.images.remove(tag, force=True)
            except Exception:
                pass
        client.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
