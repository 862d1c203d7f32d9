"""``%gpuinfo`` inside real kernels on this GPU-less machine.

A local ipykernel (``%load_ext jupyter_gpuenv``), a kernel of a conda prefix whose
PyTorch reports a CUDA 12.1 build, and a kernel of the real CPU PyTorch image started
by the Docker provisioner (where the extension is preloaded): each must print the
no-GPU sentence with what is known, and never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

import jupyter_gpuenv
from jupyter_gpuenv.kernel.kernel_view import NO_GPU_SENTENCE
from tests.gpu.kernel_session import Outputs, run_cell
from tests.support.fake_torch import TORCH_CU121
from tests.support.server_config import server_config

REPO = Path(jupyter_gpuenv.__file__).parent.parent


def write_kernelspec(root: Path, name: str, python: str) -> KernelSpecManager:
    """A kernelspec for ``python``'s ipykernel with our package importable, as on disk."""
    folder = root / name
    folder.mkdir(parents=True)
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": name,
        "language": "python",
        "env": {"PYTHONPATH": str(REPO)},
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(root)])


async def started_kernel(ksm: KernelSpecManager, name: str) -> AsyncIterator[Any]:
    manager = AsyncKernelManager(kernel_name=name, kernel_spec_manager=ksm)
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        yield client
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


@pytest.fixture
async def local_kernel(tmp_path: Path) -> AsyncIterator[Any]:
    ksm = write_kernelspec(tmp_path / "kernels", "gpuinfo-local", sys.executable)
    async for client in started_kernel(ksm, "gpuinfo-local"):
        yield client


def assert_no_gpu_report(out: Outputs) -> str:
    assert not out.errors, out.errors
    (bundle,) = out.data
    text = bundle["text/plain"]
    assert text.startswith(f"{NO_GPU_SENTENCE}: libnvidia-ml.so not found")
    assert "<table>" not in bundle["text/html"]  # nothing to tabulate without a GPU
    assert NO_GPU_SENTENCE in bundle["text/html"]
    assert "Traceback" not in text
    return text


async def test_gpuinfo_in_a_local_kernel(local_kernel: Any) -> None:
    await run_cell(local_kernel, "%load_ext jupyter_gpuenv")
    text = assert_no_gpu_report(await run_cell(local_kernel, "%gpuinfo"))
    assert "PyTorch: not installed in this environment" in text
    out = await run_cell(
        local_kernel, "info = %gpuinfo --json\nimport json; print(json.dumps(info))"
    )
    info = json.loads(out.text)
    assert info["available"] is False and info["devices"] == []
    assert info["pid"] > 0 and info["torch"]["installed"] is False
    assert info["headline"].startswith(NO_GPU_SENTENCE)


async def test_gpuinfo_in_a_conda_kernel_with_a_cuda_build(
    tmp_path: Path, conda_prefix_factory: Any
) -> None:
    prefix = conda_prefix_factory(tmp_path / "envs" / "vision", torch=TORCH_CU121)
    ksm = write_kernelspec(tmp_path / "kernels", "gpuinfo-conda", str(prefix / "bin" / "python"))
    async for client in started_kernel(ksm, "gpuinfo-conda"):
        await run_cell(client, "%load_ext jupyter_gpuenv")
        text = assert_no_gpu_report(await run_cell(client, "%gpuinfo"))
        assert "PyTorch 2.9.0+cu121 (CUDA 12.1 build) · cuDNN 9.1.0" in text
        assert "torch.cuda.is_available(): False" in text
        assert "Arch list: sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90" in text
        # The doctor's verdict for this build on what the kernel sees (no GPU at all).
        verdict = next(line for line in text.splitlines() if line.startswith("Compatibility:"))
        assert verdict.startswith("Compatibility: warning — ")
        assert "CPU only" in verdict


@pytest.fixture
def jp_server_config(torch_cpu_image: str) -> dict[str, Any]:
    return server_config(docker_images={"torchcpu": torch_cpu_image})


@pytest.mark.docker
async def test_gpuinfo_in_a_docker_kernel_of_the_cpu_torch_image(
    jp_fetch: Any, jp_serverapp: Any
) -> None:
    listing = json.loads((await jp_fetch("gpuenv", "api", "environments")).body)
    (env,) = [e for e in listing["environments"] if e["name"] == "torchcpu"]
    response = await jp_fetch(
        "api",
        "kernels",
        method="POST",
        body=json.dumps({"name": env["kernel_name"]}),
        request_timeout=300,
    )
    kernel_id = json.loads(response.body)["id"]
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        # No %load_ext: the provisioner preloads the extension.
        text = assert_no_gpu_report(await run_cell(client, "%gpuinfo"))
        assert "in this container" in text.splitlines()[0]
        assert "PyTorch 2.13.0+cpu (CPU build)" in text
        assert "torch.cuda.is_available(): False" in text
        out = await run_cell(client, "info = %gpuinfo --json\nimport json; print(json.dumps(info))")
        info = json.loads(out.text)
        assert info["torch"]["version"] == "2.13.0+cpu" and info["torch"]["cuda"] is None
        assert info["environment_id"] == env["id"]
    finally:
        client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE", request_timeout=120)
