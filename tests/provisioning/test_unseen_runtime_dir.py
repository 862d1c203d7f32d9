"""A server whose runtime folder Docker cannot see is told so, and leaves nothing behind.

A plain jupyter_client program starts a Docker kernel from a mount namespace of its own
(``unshare -m``, as systemd's PrivateTmp or ProtectHome give a service) whose runtime
folder lies on a tmpfs only that namespace has: the Docker engine, outside it, cannot
bind the kernel's connection file, and the start says which folder and what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from jupyter_gpuenv.docker import labels

pytestmark = [pytest.mark.docker]

START = """
import asyncio, json, pathlib, sys
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from traitlets.config import Config
from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.provisioning.kernelspecs import GpuEnvKernelSpecManager
from jupyter_gpuenv.services import Services

config = Config({"GpuEnv": json.loads(sys.argv[1])})
ksm = GpuEnvKernelSpecManager(config=config)
services = Services.build(GpuEnv(config=config), cache_path=pathlib.Path(sys.argv[2], "c.json"))
ksm.use_services(services)
(env,) = [e for e in services.catalog.list_environments_sync() if e.name == "py"]
# Where a server keeps connection files: its runtime folder.
runtime = pathlib.Path(jupyter_runtime_dir())
runtime.mkdir(parents=True, exist_ok=True)
km = AsyncKernelManager(
    kernel_name=env.kernel_name,
    kernel_spec_manager=ksm,
    config=config,
    connection_file=str(runtime / "kernel-unseen.json"),
)
try:
    asyncio.run(km.start_kernel(cwd=sys.argv[2]))
except Exception as err:
    print("REFUSED", getattr(err, "message", None) or err, flush=True)
    print("KERNEL", km.kernel_id, flush=True)
    sys.exit(3)
print("STARTED", km.kernel_id, flush=True)
"""


def test_a_runtime_folder_docker_cannot_see_is_named_in_the_refusal(
    python_kernel_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("unshare -m needs root")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    settings = {
        "docker_images": {"py": {"image": python_kernel_image, "gpus": "none"}},
        "conda_envs_dirs": [],
        "venv_dirs": [],
        "docker_label_discovery": False,
        "docker_discover_pytorch_images": False,
    }
    namespace = f'mount --make-rprivate / && mount -t tmpfs tmpfs "{hidden}" && exec "$@"'
    run = subprocess.run(
        ["unshare", "-m", "--", "sh", "-c", namespace, "private-namespace"]
        + [sys.executable, "-c", START, json.dumps(settings), str(work)],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(hidden / "runtime")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 3, run.stdout + run.stderr[-3000:]
    refusal = run.stdout.split("REFUSED", 1)[1].split("\nKERNEL", 1)[0]
    assert "bind source path does not exist" in refusal, refusal
    assert f"does not see {hidden / 'runtime'}" in refusal, refusal
    assert "JUPYTER_RUNTIME_DIR" in refusal, refusal
    kernel_id = run.stdout.split("KERNEL", 1)[1].split()[0]
    left = docker_client.containers.list(
        all=True, filters={"label": f"{labels.KERNEL_ID}={kernel_id}"}
    )
    assert left == []
