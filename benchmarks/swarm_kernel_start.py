"""Swarm mode: kernel start -> ready, many kernels on several nodes, and a freed GPU.

Goals: a swarm-mode kernel within 1.2 x a hand-written ``docker service create`` of the
same image starting ipykernel (secret, host network, one GPU reserved); 20 kernels with
one GPU each on 3 nodes all get ready (time printed); the time from a GPU freed (its
kernel shut down) to the kernel waiting for it being ready.

"Ready" is a kernel_info reply on the shell channel, measured from the moment the start
is asked for. The swarm is the test harness's (tests/support/swarm.py: dockerds in network
namespaces on this machine, fake GPUs as generic resources), 20 GPUs over 3 nodes (8/6/6).
Needs root. Run: ``python benchmarks/swarm_kernel_start.py [--runs 5] [--concurrent 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import docker  # noqa: E402
from docker.types import Resources, RestartPolicy, SecretReference  # noqa: E402
from jupyter_client.asynchronous import AsyncKernelClient  # noqa: E402
from jupyter_client.connect import write_connection_file  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from kernel_start import READY_TIMEOUT, gpuenv_ksm, report, time_manager  # noqa: E402

from jupyter_gpuenv.docker import labels  # noqa: E402
from jupyter_gpuenv.provisioning.container.readiness import PORT_NAMES, port_open  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402
from tests.support.swarm import (  # noqa: E402
    GPU_KIND,
    OLD_ENGINE_OPT_OUT,
    gpu_layout,
    start_swarm_cluster,
)


async def time_raw_service(manager: docker.DockerClient, image: str, workdir: Path) -> float:
    """Secret + ``docker service create`` of ipykernel on the host network, 1 GPU reserved."""
    path, info = write_connection_file(
        str(workdir / f"raw-{os.urandom(4).hex()}.json"), ip="0.0.0.0"
    )
    name = f"gpuenv-bench-raw-{os.urandom(4).hex()}"
    started = time.perf_counter()
    secret = manager.secrets.create(name=name, data=Path(path).read_bytes())
    service = manager.services.create(
        image,
        ["python3", "-m", "ipykernel_launcher", "-f", f"/run/secrets/{name}"],
        name=name,
        networks=["host"],
        secrets=[SecretReference(secret.id, name)],
        resources=Resources(generic_resources={GPU_KIND: 1}),
        restart_policy=RestartPolicy(condition="none"),
    )
    try:
        while True:
            tasks = [t for t in service.tasks() if t["Status"]["State"] == "running"]
            if tasks:
                break
            await asyncio.sleep(0.05)
        node = manager.nodes.get(tasks[0]["NodeID"]).attrs["Status"]["Addr"]
        for port_name in PORT_NAMES:  # as the provisioner does: ports first, then the client
            while not await port_open(node, int(info[port_name])):
                await asyncio.sleep(0.05)
        client = AsyncKernelClient(connection_file=path)
        client.load_connection_file()
        client.ip = node
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=READY_TIMEOUT)
            return time.perf_counter() - started
        finally:
            client.stop_channels()
    finally:
        service.remove()
        for _ in range(40):
            try:
                secret.remove()
                break
            except docker.errors.APIError:
                await asyncio.sleep(0.25)
        os.unlink(path)


def new_manager(ksm, env) -> AsyncKernelManager:
    """A kernel manager carrying the benchmark's c.GpuEnv (swarm mode) to its provisioner."""
    return AsyncKernelManager(
        kernel_name=env.kernel_name, kernel_spec_manager=ksm, config=ksm.config
    )


async def bench_start(manager, ksm, env, image: str, runs: int, workdir: Path) -> None:
    ours, raw = [], []
    await time_manager(new_manager(ksm, env))
    await time_raw_service(manager, image, workdir)  # warm-up
    for _ in range(runs):
        km = new_manager(ksm, env)
        ours.append(await time_manager(km, cwd=str(workdir)))
        raw.append(await time_raw_service(manager, image, workdir))
    report("swarm kernel start vs docker service create", ours, raw, 1.2)


async def started(km: AsyncKernelManager, cwd: str) -> tuple[AsyncKernelManager, float]:
    begin = time.perf_counter()
    await km.start_kernel(cwd=cwd)
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=READY_TIMEOUT)
    finally:
        client.stop_channels()
    return km, time.perf_counter() - begin


async def bench_many_and_freed(manager, ksm, env, count: int, workdir: Path) -> None:
    managers = [new_manager(ksm, env) for _ in range(count)]
    begin = time.perf_counter()
    results = await asyncio.gather(
        *(started(km, str(workdir)) for km in managers), return_exceptions=True
    )
    total = time.perf_counter() - begin
    ready = [r for r in results if isinstance(r, tuple)]
    failed = [r for r in results if not isinstance(r, tuple)]
    services = manager.services.list(filters={"label": f"{labels.ROLE}=kernel"})
    nodes = {}
    for service in services:
        for task in service.tasks(filters={"desired-state": "running"}):
            name = manager.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
            nodes[name] = nodes.get(name, 0) + 1
    times = [t for _, t in ready]
    print(
        f"{count} swarm kernels started concurrently: {len(ready)} ready, {len(failed)} "
        f"failed; all ready after {total:.2f} s (slowest {max(times, default=0):.2f} s, "
        f"median {statistics.median(times) if times else 0:.2f} s); per node: "
        f"{json.dumps(nodes, sort_keys=True)}"
    )
    for err in failed[:3]:
        print(f"  failure: {err!r}")

    # Every GPU taken: one more start waits; shut one kernel down and time the handover.
    waiting = new_manager(ksm, env)
    pending = asyncio.ensure_future(started(waiting, str(workdir)))
    await asyncio.sleep(5)
    assert not pending.done(), "the extra kernel did not wait for a GPU"
    victim = ready[0][0]
    await victim.shutdown_kernel(now=True)
    freed = time.perf_counter()
    await pending
    print(f"GPU freed -> waiting kernel ready: {time.perf_counter() - freed:.2f} s")
    await asyncio.gather(
        *(km.shutdown_kernel(now=True) for km, _ in ready[1:]),
        waiting.shutdown_kernel(now=True),
    )
    left = manager.services.list(filters={"label": f"{labels.ROLE}=kernel"})
    print(f"  kernel services left after shutdown: {len(left)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()
    host = docker.from_env()
    image = ensure_image(host, "python-kernel")
    cluster = start_swarm_cluster(gpu_layout(8, 6, 6), host, [image])
    print(f"image: {image}; {os.cpu_count()} CPUs; {cluster.summary()}")
    try:
        with tempfile.TemporaryDirectory(prefix="gpuenv-bench-", dir="/tmp") as tmp:
            workdir = Path(tmp)
            os.chmod(workdir, 0o755)
            settings = {
                "scheduler": "swarm",
                "docker_host": cluster.manager_url,
                "docker_images": {"bench": {"image": image, "gpus": 1}},
                **OLD_ENGINE_OPT_OUT,
            }
            ksm, envs = gpuenv_ksm(settings, workdir)
            (env,) = envs
            await bench_start(cluster.manager, ksm, env, image, args.runs, workdir)
            await bench_many_and_freed(cluster.manager, ksm, env, args.concurrent, workdir)
    finally:
        cluster.close()


if __name__ == "__main__":
    asyncio.run(main())
