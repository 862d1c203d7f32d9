"""Environments without PyTorch still carry a CUDA runtime: conda and pip packages, and the
``CUDA_VERSION`` of NVIDIA-style images (read from a real image on a real engine)."""

from __future__ import annotations

import io
import tarfile
import uuid

import pytest

from jupyter_gpuenv.doctor.cuda_runtime import cuda_runtime_of, image_runtime
from jupyter_gpuenv.doctor.report import evaluate_environment
from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.kernel.compatibility import HostInfo


def environment(kind: str, location: dict, **fields) -> Environment:
    return Environment(
        id=f"{kind}-x-1",
        name="x",
        kind=kind,
        display_name="x",
        kernel_name=f"gpuenv-{kind}-x-1",
        location=location,
        **fields,
    )


def test_conda_cuda_packages(conda_prefix_factory, tmp_path):
    prefix = conda_prefix_factory(
        tmp_path / "jax",
        packages=[
            ("cuda-cudart", "12.1.105", "0", "nvidia"),
            ("cuda-version", "12.1", "h1d6eff3_3", "conda-forge"),
            ("cuda-cudart-dev", "12.1.105", "0", "nvidia"),
        ],
    )
    env = environment("conda", {"prefix": str(prefix)})
    assert cuda_runtime_of(env) == ("12.1", "conda package cuda-version 12.1")

    old = evaluate_environment(env, HostInfo.hypothetical_host("470.82.01", "8.6"))
    assert old.verdict == "error"
    (error,) = [f for f in old.findings if f.severity == "error"]
    assert error.message.startswith(
        "CUDA 12.1 runtime (conda package cuda-version 12.1) needs driver ≥ 530.30.02"
    )
    assert (
        error.fix == "upgrade the driver to ≥ 530.30.02, or install CUDA packages for CUDA ≤ 11.4"
    )
    new = evaluate_environment(env, HostInfo.hypothetical_host("535.54.03", "8.6"))
    # No arch list and no cuDNN expectations without PyTorch: only the driver is judged.
    assert [(f.severity, f.message.split(" runs")[0]) for f in new.findings] == [
        ("ok", "CUDA 12.1 runtime (conda package cuda-version 12.1)")
    ]


def test_old_cudatoolkit(conda_prefix_factory, tmp_path):
    prefix = conda_prefix_factory(
        tmp_path / "tf", packages=[("cudatoolkit", "11.8.0", "h6a678d5_0", "defaults")]
    )
    assert cuda_runtime_of(environment("conda", {"prefix": str(prefix)})) == (
        "11.8",
        "conda package cudatoolkit 11.8.0",
    )


def test_pip_cuda_runtime_wheel(venv_factory, tmp_path):
    prefix = venv_factory(
        tmp_path / "cupy", ipykernel=False, pip_packages=[("nvidia-cuda-runtime-cu12", "12.4.127")]
    )
    env = environment("venv", {"prefix": str(prefix)})
    assert cuda_runtime_of(env) == ("12.4", "pip package nvidia-cuda-runtime-cu12 12.4.127")
    result = evaluate_environment(env, HostInfo())  # this GPU-less kind of host
    assert result.verdict == "warning"
    assert result.headline().startswith(
        "This environment (pip package nvidia-cuda-runtime-cu12 12.4.127) is built for CUDA 12.4"
    )


def test_prefix_without_cuda_and_with_pytorch_are_left_alone(conda_prefix_factory, tmp_path):
    plain = conda_prefix_factory(tmp_path / "plain")
    assert cuda_runtime_of(environment("conda", {"prefix": str(plain)})) is None
    result = evaluate_environment(
        environment("conda", {"prefix": str(plain)}), HostInfo.hypothetical_host("470.82.01")
    )
    assert result.verdict == "ok"


@pytest.fixture
def cuda_env_image(docker_client):
    """A real (empty) image whose config sets CUDA_VERSION like nvidia/cuda images do."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w"):
        pass
    tag = f"gpuenv-test/doctor-cuda-env:{uuid.uuid4().hex[:12]}"
    repository, version = tag.split(":")
    docker_client.api.import_image_from_data(
        data.getvalue(),
        repository=repository,
        tag=version,
        changes=["ENV CUDA_VERSION=12.1.1", "ENV NVIDIA_VISIBLE_DEVICES=all"],
    )
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.mark.docker
def test_image_cuda_version(docker_client, cuda_env_image):
    assert image_runtime(docker_client, cuda_env_image) == ("12.1", "image CUDA_VERSION=12.1.1")
    env = environment("docker", {"image": cuda_env_image, "image_id": None, "conda_env": None})
    result = evaluate_environment(env, HostInfo.hypothetical_host("470.82.01", "8.6"))
    (error,) = [f for f in result.findings if f.severity == "error"]
    assert error.message.startswith("CUDA 12.1 runtime (image CUDA_VERSION=12.1.1) needs driver")
    assert error.fix.endswith("or use an image built for CUDA ≤ 11.4")
    assert image_runtime(docker_client, "gpuenv-test/no-such-image:missing") is None
