"""Kernel start -> ready latency of the provisioners (issue: kernel provisioners).

Goals: a Docker kernel within 1.0 x a raw ``docker run`` of the same image starting
ipykernel; a conda kernel within 1.1 x jupyter_client's LocalProvisioner running the same
python; 20 Docker kernels started at once all get ready (time printed).

"Ready" is the same for every variant: a kernel_info reply on the shell channel
(``client.wait_for_ready``), measured from the moment the start is asked for.

* docker, ours: KernelManager + GpuEnvKernelSpecManager + DockerProvisioner (container
  create with labels, mounts, user, init; readiness wait; the catalog already scanned,
  as in a running server);
* docker, raw: ``docker run -d --rm --network host`` of the same image with the
  connection file mounted, then the same client wait;
* conda, ours: LocalEnvProvisioner (activation incl. activate.d, kernel-side package,
  %gpuinfo extension) on a conda prefix from the test harness;
* conda, baseline: a plain kernelspec with the same python (LocalProvisioner).

Runs alternate between the variants; medians are compared. Run:
``python benchmarks/kernel_start.py [--runs 7] [--concurrent 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import docker  # noqa: E402
from jupyter_client.connect import write_connection_file  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from traitlets.config import Config  # noqa: E402

from jupyter_gpuenv.config import GpuEnv  # noqa: E402
from jupyter_gpuenv.docker import labels  # noqa: E402
from jupyter_gpuenv.provisioning.kernelspecs import GpuEnvKernelSpecManager  # noqa: E402
from jupyter_gpuenv.services import Services  # noqa: E402
from tests.support.conda_prefix import make_conda_prefix  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402

READY_TIMEOUT = 180


async def time_manager(km: AsyncKernelManager, **start_kwargs) -> float:
    """Seconds from start_kernel to a kernel_info reply; the kernel is shut down after."""
    started = time.perf_counter()
    await km.start_kernel(**start_kwargs)
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=READY_TIMEOUT)
        return time.perf_counter() - started
    finally:
        client.stop_channels()
        await km.shutdown_kernel(now=True)


async def time_raw_docker(image: str, workdir: Path) -> float:
    """``docker run`` of the image starting ipykernel, until the same client is ready."""
    from jupyter_client.asynchronous import AsyncKernelClient

    connection, _ = write_connection_file(
        str(workdir / f"raw-{os.urandom(4).hex()}.json"), ip="127.0.0.1"
    )
    os.chmod(connection, 0o644)
    name = f"gpuenv-bench-raw-{os.urandom(4).hex()}"
    started = time.perf_counter()
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "--name",
            name,
            "--network",
            "host",
            "-v",
            f"{connection}:/connection.json:ro",
            "--entrypoint",
            "python3",
            image,
            "-m",
            "ipykernel_launcher",
            "-f",
            "/connection.json",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    client = AsyncKernelClient(connection_file=connection)
    client.load_connection_file()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=READY_TIMEOUT)
        return time.perf_counter() - started
    finally:
        client.stop_channels()
        subprocess.run(
            ["docker", "rm", "-f", name],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.unlink(connection)


def gpuenv_ksm(settings: dict, data_dir: Path) -> tuple[GpuEnvKernelSpecManager, list]:
    """A kernelspec manager whose catalog has already scanned (as in a running server)."""
    config = Config(
        {
            "GpuEnv": {
                "conda_envs_dirs": [],
                "venv_dirs": [],
                "docker_label_discovery": False,
                **settings,
            }
        }
    )
    ksm = GpuEnvKernelSpecManager(config=config)
    services = Services.build(GpuEnv(config=config), cache_path=data_dir / "catalog-cache.json")
    ksm.use_services(services)
    envs = services.catalog.list_environments_sync()
    return ksm, envs


def report(label: str, ours: list[float], base: list[float], goal: float) -> None:
    mine, theirs = statistics.median(ours), statistics.median(base)
    ratio = mine / theirs
    verdict = "meets" if ratio <= goal else "misses"
    print(
        f"{label}: ours median {mine * 1000:.0f} ms (min {min(ours) * 1000:.0f}), "
        f"baseline median {theirs * 1000:.0f} ms (min {min(base) * 1000:.0f}); "
        f"ratio {ratio:.2f} ({verdict} the {goal} x goal)"
    )


async def bench_docker(image: str, runs: int, workdir: Path) -> None:
    ksm, envs = gpuenv_ksm({"docker_images": {"bench": image}}, workdir)
    (env,) = [e for e in envs if e.name == "bench"]
    ours, raw = [], []
    await time_manager(
        AsyncKernelManager(kernel_name=env.kernel_name, kernel_spec_manager=ksm), cwd=str(workdir)
    )  # warm-up: page cache, Docker's image layers
    await time_raw_docker(image, workdir)
    for _ in range(runs):
        km = AsyncKernelManager(kernel_name=env.kernel_name, kernel_spec_manager=ksm)
        ours.append(await time_manager(km, cwd=str(workdir)))
        raw.append(await time_raw_docker(image, workdir))
    report("docker kernel vs raw docker run", ours, raw, 1.0)


async def bench_conda(runs: int, workdir: Path) -> None:
    prefix = make_conda_prefix(
        workdir / "envs" / "bench",
        activate_scripts={"cuda.sh": 'export CUDA_HOME="$CONDA_PREFIX"\n'},
    )
    ksm, envs = gpuenv_ksm({"conda_envs_dirs": [str(prefix.parent)]}, workdir)
    (env,) = envs
    kernels = workdir / "kernels" / "plain-bench"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    env.python_executable,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "plain",
                "language": "python",
            }
        )
    )
    plain = KernelSpecManager(kernel_dirs=[str(kernels.parent)])
    ours, base = [], []
    await time_manager(AsyncKernelManager(kernel_name=env.kernel_name, kernel_spec_manager=ksm))
    await time_manager(AsyncKernelManager(kernel_name="plain-bench", kernel_spec_manager=plain))
    for _ in range(runs):
        km = AsyncKernelManager(kernel_name=env.kernel_name, kernel_spec_manager=ksm)
        ours.append(await time_manager(km))
        km = AsyncKernelManager(kernel_name="plain-bench", kernel_spec_manager=plain)
        base.append(await time_manager(km))
    report("conda kernel vs LocalProvisioner", ours, base, 1.1)


async def bench_concurrent(image: str, count: int, workdir: Path) -> None:
    ksm, envs = gpuenv_ksm({"docker_images": {"bench": image}}, workdir)
    (env,) = [e for e in envs if e.name == "bench"]
    managers = [
        AsyncKernelManager(kernel_name=env.kernel_name, kernel_spec_manager=ksm)
        for _ in range(count)
    ]
    started = time.perf_counter()
    results = await asyncio.gather(
        *(time_manager(km, cwd=str(workdir)) for km in managers), return_exceptions=True
    )
    total = time.perf_counter() - started
    ready = [r for r in results if isinstance(r, float)]
    failed = [r for r in results if not isinstance(r, float)]
    print(
        f"{count} docker kernels started concurrently: {len(ready)} ready, "
        f"{len(failed)} failed; all ready after {total:.2f} s "
        f"(slowest {max(ready, default=0):.2f} s, median {statistics.median(ready):.2f} s)"
    )
    for err in failed[:3]:
        print(f"  failure: {err}")
    left = docker.from_env().containers.list(
        all=True, filters={"label": [f"{labels.ROLE}=kernel", f"{labels.ENVIRONMENT_ID}={env.id}"]}
    )
    print(f"  containers left after shutdown: {len(left)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()
    image = ensure_image(docker.from_env(), "python-kernel")
    print(f"image: {image}; {os.cpu_count()} CPUs; runs per variant: {args.runs}")
    with tempfile.TemporaryDirectory(prefix="gpuenv-bench-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        await bench_docker(image, args.runs, workdir)
        await bench_conda(args.runs, workdir)
        await bench_concurrent(image, args.concurrent, workdir)


if __name__ == "__main__":
    asyncio.run(main())
