"""``jupyter gpuenv kernelspecs install|list|remove`` with real prefixes, then a kernel
started from the installed spec by plain jupyter_client (no server, no gpuenv manager)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from tests.support.fake_torch import TorchSpec, write_fake_torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def jupyter_dirs(tmp_path, monkeypatch, conda_prefix_factory):
    prefix = conda_prefix_factory(tmp_path / "envs" / "vision")
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "GpuEnv": {
                    "conda_envs_dirs": [str(prefix.parent)],
                    "venv_dirs": [],
                    "docker_images": {},
                    "docker_label_discovery": False,
                    "docker_discover_pytorch_images": False,
                }
            }
        )
    )
    env = {
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_PATH": "",
        "JUPYTER_PLATFORM_DIRS": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {"prefix": prefix, "data": tmp_path / "data"}


def cli(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_gpuenv.cli.main", "kernelspecs", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def listed() -> dict[str, str]:
    return {row["name"]: row["status"] for row in json.loads(cli("list", "--json"))["kernelspecs"]}


async def test_install_list_remove_and_use_with_plain_jupyter_client(jupyter_dirs):
    out = cli("install")
    (name,) = [line.split(":")[0] for line in out.splitlines() if line.startswith("gpuenv-")]
    folder = jupyter_dirs["data"] / "kernels" / name
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["metadata"]["kernel_provisioner"]["provisioner_name"] == "gpuenv-local-provisioner"
    assert (folder / "logo-64x64.png").exists()
    assert listed() == {name: "current"}

    # A tool that knows nothing about gpuenv starts it through jupyter_client alone.
    km = AsyncKernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager())
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(
            "import os, sys; assert sys.prefix == os.environ['CONDA_PREFIX']", timeout=60
        )
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        await km.shutdown_kernel(now=True)

    # The environment changes (PyTorch installed): the spec on disk is stale.
    site = next(jupyter_dirs["prefix"].glob("lib/python3*/site-packages"))
    write_fake_torch(
        site,
        TorchSpec.from_dict({"version": "2.9.0+cu121", "cuda": "12.1"}, default_installer="conda"),
    )
    assert listed() == {name: "stale"}
    cli("install")
    assert listed() == {name: "current"}

    shutil.rmtree(jupyter_dirs["prefix"])
    assert listed() == {name: "gone"}
    cli("remove")
    assert listed() == {}
    assert not folder.exists()
