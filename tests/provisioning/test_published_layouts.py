"""Images laid out like the official PyTorch and the NGC images, under their published
names, with no configuration at all: listed with the right versions, exported, judged by
the doctor, and kernels started in them (the official one has no pip and no ipykernel:
the kernel layer goes into its conda python) running ``%gpuinfo``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from jupyter_gpuenv.doctor.docker_gpus import NO_RUNTIME
from jupyter_gpuenv.kernel.kernel_view import NO_GPU_SENTENCE
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.images import tag_as
from tests.support.server_config import server_config

pytestmark = pytest.mark.docker

OFFICIAL_REF = "pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime"
NGC_REF = "nvcr.io/nvidia/pytorch:24.08-py3"
# %gpuinfo is preloaded in container kernels; --json returns what it shows.
GPUINFO = "info = %gpuinfo --json\nimport json; print(json.dumps(info))"


@pytest.fixture
def published(docker_client, pytorch_official_image, ngc_pytorch_image) -> Iterator[dict]:
    """Image ids of the two layouts while they carry their published names."""
    with tag_as(pytorch_official_image, OFFICIAL_REF), tag_as(ngc_pytorch_image, NGC_REF):
        yield {
            "official": docker_client.images.get(OFFICIAL_REF).id,
            "ngc": docker_client.images.get(NGC_REF).id,
        }


@pytest.fixture
def jp_server_config(published):
    # Nothing configured: only discovery (the defaults), no host conda envs or venvs.
    return server_config(docker_discover_pytorch_images=True)


async def listed(jp_fetch, published) -> dict[str, dict]:
    body = json.loads((await jp_fetch("gpuenv", "api", "environments")).body)
    by_image = {e["location"]["image_id"]: e for e in body["environments"] if e["kind"] == "docker"}
    return {name: by_image[image_id] for name, image_id in published.items()}


async def run_in_kernel(jp_fetch, jp_ws_fetch, kernel_name: str, *cells: str) -> list[str]:
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": kernel_name}), request_timeout=600
    )
    kernel_id = json.loads(response.body)["id"]
    ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
    try:
        return [(await ws.run(cell)).text for cell in cells]
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_listed_with_their_versions_and_a_kernelspec(jp_fetch, published):
    envs = await listed(jp_fetch, published)
    official, ngc = envs["official"], envs["ngc"]
    assert official["display_name"] == (
        "pytorch-2.9.0-cuda12.1-cudnn9-runtime (docker) · PyTorch 2.9 · CUDA 12.1"
    )
    assert ngc["display_name"] == "pytorch-24.08-py3 (docker) · PyTorch 2.5 · CUDA 12.6"
    assert official["python_executable"] == "/opt/conda/bin/python3"
    assert official["ipykernel"] is False and ngc["ipykernel"] is True
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    for env in (official, ngc):
        # this engine has no NVIDIA support: kernels start, without GPUs
        assert all(p.startswith(NO_RUNTIME) for p in env["problems"]), env["problems"]
        assert env["cannot_start"] is None
        assert specs[env["kernel_name"]]["spec"]["display_name"] == env["display_name"]


async def test_official_export_has_the_conda_records_and_channels(jp_fetch, published):
    envs = await listed(jp_fetch, published)
    response = await jp_fetch("gpuenv", "api", "environments", envs["official"]["id"], "export")
    data = yaml.safe_load(response.body)
    assert data["channels"][:2] == ["pytorch", "nvidia"]
    deps = [d for d in data["dependencies"] if isinstance(d, str)]
    assert "pytorch=2.9.0=py3.11_cuda12.1_cudnn9.1.0_0" in deps
    assert any(d.startswith("pytorch-cuda=12.1=") for d in deps)
    assert any(d.startswith("python=3.11.") for d in deps)
    assert not [d for d in data["dependencies"] if isinstance(d, dict)]  # no pip section


async def test_doctor_judges_both(jp_fetch, published):
    envs = await listed(jp_fetch, published)
    report = json.loads((await jp_fetch("gpuenv", "api", "doctor")).body)
    by_id = {e["id"]: e for e in report["environments"]}
    for env in envs.values():
        entry = by_id[env["id"]]
        assert entry["verdict"] == env["compatibility"]["verdict"]
        if not report["host"]["has_gpu"]:  # this machine: CUDA builds work on the CPU only
            assert entry["verdict"] == "warning"
            assert "CPU only" in entry["findings"][0]["message"]


async def test_kernel_in_the_official_layout_without_pip(
    jp_fetch, jp_ws_fetch, docker_client, published
):
    envs = await listed(jp_fetch, published)
    torch_line, gpuinfo = await run_in_kernel(
        jp_fetch,
        jp_ws_fetch,
        envs["official"]["kernel_name"],
        "import sys, os, torch\nprint(sys.executable, torch.__version__, torch.version.cuda, "
        "os.environ.get('PYTORCH_VERSION'))",
        GPUINFO,
    )
    assert torch_line.split() == ["/opt/conda/bin/python3", "2.9.0", "12.1", "2.9.0"]
    info = json.loads(gpuinfo)
    assert info["headline"].startswith(NO_GPU_SENTENCE), info
    assert (info["torch"]["version"], info["torch"]["cuda"]) == ("2.9.0", "12.1")
    # The user's image is untouched: still no pip, no ipykernel.
    out = docker_client.containers.run(
        OFFICIAL_REF,
        [
            "python",
            "-c",
            "import importlib.util as u; print(u.find_spec('ipykernel'), u.find_spec('pip'))",
        ],
        remove=True,
        network_mode="none",
    )
    assert out.decode().split() == ["None", "None"]


async def test_kernel_in_the_ngc_layout(jp_fetch, jp_ws_fetch, published):
    envs = await listed(jp_fetch, published)
    torch_line, gpuinfo = await run_in_kernel(
        jp_fetch,
        jp_ws_fetch,
        envs["ngc"]["kernel_name"],
        "import sys, torch\nprint(sys.executable, torch.__version__, torch.version.cuda)",
        GPUINFO,
    )
    assert torch_line.split() == ["/usr/bin/python3", "2.5.0a0+872d972e41.nv24.08", "12.6"]
    info = json.loads(gpuinfo)
    assert info["headline"].startswith(NO_GPU_SENTENCE), info
    assert (info["torch"]["version"], info["torch"]["cuda"]) == (
        "2.5.0a0+872d972e41.nv24.08",
        "12.6",
    )
