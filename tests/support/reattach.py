"""A kernel taken back by a second kernel manager, as a restarted server would, and a
running cell interrupted through it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.provisioning.container.provisioner import DockerProvisioner
from jupyter_gpuenv.provisioning.kernelspecs import GpuEnvKernelSpecManager
from jupyter_gpuenv.services import Services

# A plain jupyter_client program's catalog: the admin's settings only, nothing discovered.
NOTHING_DISCOVERED = {"conda_envs_dirs": [], "venv_dirs": [], "docker_label_discovery": False}

LONG_CELL = "import time\nfor _ in range(1200):\n    time.sleep(0.1)\n"


async def run_until_interrupted(km: AsyncKernelManager) -> dict:
    """Run a long cell, interrupt it through the kernel manager; the cell's reply."""
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        msg_id = client.execute(LONG_CELL)
        while True:  # the cell runs: its busy status is on IOPub
            msg = await client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
                break
        await asyncio.sleep(0.5)
        await km.interrupt_kernel()
        while True:
            reply = await client.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                return dict(reply["content"])
    finally:
        client.stop_channels()


async def reloaded(
    first: AsyncKernelManager,
) -> tuple[AsyncKernelManager, DockerProvisioner, dict[str, Any]]:
    """A new kernel manager that loads ``first``'s connection info and provisioner info,
    the runtime's record through JSON as a server keeps it; with that record."""
    assert first.provisioner is not None and first.kernel_id is not None
    info = await first.provisioner.get_provisioner_info()
    record = json.loads(json.dumps(info["runtime"]))
    second = AsyncKernelManager(
        kernel_name=first.kernel_name,
        kernel_spec_manager=first.kernel_spec_manager,
        config=first.config,
    )
    second.load_connection_info(first.get_connection_info())
    provisioner = DockerProvisioner(
        kernel_id=first.kernel_id, kernel_spec=second.kernel_spec, parent=second
    )
    await provisioner.load_provisioner_info({**info, "runtime": record})
    second.kernel_id = first.kernel_id
    second.provisioner = provisioner
    return second, provisioner, record


async def first_manager(
    settings: dict[str, Any], cache: Path, environment: str
) -> tuple[AsyncKernelManager, Services, Environment]:
    """A kernel manager of a plain jupyter_client program for the catalog environment
    named ``environment`` (its kernel not started yet), with the services behind it."""
    config = Config({"GpuEnv": {**NOTHING_DISCOVERED, **settings}})
    ksm = GpuEnvKernelSpecManager(config=config)
    services = Services.build(GpuEnv(config=config), cache_path=cache)
    ksm.use_services(services)
    envs = await asyncio.to_thread(services.catalog.list_environments_sync)
    (env,) = [e for e in envs if e.name == environment]
    km = AsyncKernelManager(kernel_name=env.kernel_name, kernel_spec_manager=ksm, config=config)
    return km, services, env
