"""Kernel start -> ready through the JupyterHub kernel broker vs the Docker provisioner itself.

Goal: a Docker kernel started through the broker (c.GpuEnv.broker_url: the single-user
server's provisioner asks the broker, which authenticates the caller through the Hub,
applies the user's rules and starts the container) within 1.15 x the same kernel started
by the Docker provisioner directly (direct Docker mode), on the same image.

Both variants run in this process with the same KernelManager and kernelspec manager
(kernel_start.py's ``gpuenv_ksm``, catalog already listed, as in a running server), as
the same system account (a real one, created here), with that account's home as the
notebook folder. The broker is the test harness's (tests/broker/hub_broker.py): a real
JupyterHub with configurable-http-proxy, the broker as its managed service. "Ready" is a
kernel_info reply on the shell channel, measured from the moment the start is asked for.
Runs alternate between the variants; medians are compared. Needs root.
Run: ``python benchmarks/broker_kernel_start.py [--runs 9]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import docker  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from kernel_start import gpuenv_ksm, report, time_manager  # noqa: E402

from jupyter_gpuenv.docker import labels  # noqa: E402
from tests.broker.hub_broker import BrokerHub  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402

GOAL = 1.15

BROKER_CONFIG = """c.GpuEnv.docker_images = {{"python": {{"image": {image!r}, "gpus": "none"}}}}
c.GpuEnvBroker.default_policy = {{"environments": ["python"], "max_kernels": 4}}
"""


def python_environment(settings: dict, data_dir: Path) -> tuple:
    ksm, envs = gpuenv_ksm(settings, data_dir)
    (env,) = [e for e in envs if e.name == "python"]
    return ksm, env


async def bench(hub: BrokerHub, user: str, image: str, runs: int, workdir: Path) -> None:
    os.environ["JUPYTERHUB_API_TOKEN"] = hub.login(user)  # the server's token, as on a Hub
    # The broker starts kernels only for users whose server runs: the user's own server
    # runs (idle), while this process plays the part of its kernel manager.
    hub.start_server(user)
    entry = {"python": {"image": image, "gpus": "none"}}
    for variant in ("broker", "direct"):
        (workdir / variant).mkdir(parents=True)
    brokered = python_environment(
        {"docker_images": entry, "broker_url": hub.broker_url}, workdir / "broker"
    )
    direct = python_environment({"docker_images": entry, "broker_url": ""}, workdir / "direct")
    cwd = str(hub.home(user))

    def manager(variant: tuple) -> AsyncKernelManager:
        ksm, env = variant
        # The kernelspec manager's config (c.GpuEnv) is the kernel manager's too, as in a
        # server, so the provisioner sees broker_url (or its absence).
        return AsyncKernelManager(
            config=ksm.config, kernel_name=env.kernel_name, kernel_spec_manager=ksm
        )

    # Warm-up (page cache, image layers, the broker's and the Hub's first answers), and a
    # check that each variant is what it says.
    for variant, through_broker in ((brokered, True), (direct, False)):
        km = manager(variant)
        await km.start_kernel(cwd=cwd)
        try:
            assert getattr(km.provisioner, "brokered", None) is through_broker, km.provisioner
        finally:
            await km.shutdown_kernel(now=True)
        await time_manager(manager(variant), cwd=cwd)
    through, itself = [], []
    for _ in range(runs):
        through.append(await time_manager(manager(brokered), cwd=cwd))
        itself.append(await time_manager(manager(direct), cwd=cwd))
    report("docker kernel through the broker vs direct Docker mode", through, itself, GOAL)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    client = docker.from_env()
    image = ensure_image(client, "python-kernel")
    print(f"image: {image}; {os.cpu_count()} CPUs; runs per variant: {args.runs}")
    root = Path(tempfile.mkdtemp(prefix="gpuenv-bench-broker-", dir="/tmp"))
    user = f"benchbrk{os.urandom(3).hex()}"
    hub = BrokerHub(root, [user], {}, BROKER_CONFIG.format(image=image))
    try:
        hub.start()
        await bench(hub, user, image, args.runs, root / "work")
    finally:
        hub.stop()
        for container in client.containers.list(
            all=True, filters={"label": f"{labels.USER}={user}"}
        ):
            container.remove(force=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
