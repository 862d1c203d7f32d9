"""Moving tags and image digests, with real local images tagged ``latest``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import docker
import pytest
import yaml

from jupyter_gpuenv.environments.image_pins import image_digest, moving_tag, repository_of


@pytest.mark.parametrize(
    ("reference", "moving"),
    [
        ("pytorch/pytorch:latest", "latest"),
        ("pytorch/pytorch", ""),
        ("registry.example:5000/team/vision", ""),
        ("registry.example:5000/team/vision:latest", "latest"),
        ("pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime", None),
        ("registry.example:5000/team/vision:1", None),
        ("pytorch/pytorch@sha256:" + "a" * 64, None),
        ("pytorch/pytorch:latest@sha256:" + "a" * 64, None),
        ("sha256:" + "b" * 64, None),
        ("0123456789ab", None),
    ],
)
def test_moving_tag(reference: str, moving: str | None) -> None:
    assert moving_tag(reference) == moving


def test_repository_of() -> None:
    assert (
        repository_of("registry.example:5000/team/vision:1") == "registry.example:5000/team/vision"
    )
    assert repository_of("pytorch/pytorch@sha256:" + "a" * 64) == "pytorch/pytorch"
    assert repository_of("python") == "python"


@pytest.fixture
def latest_image(docker_client: docker.DockerClient, python_kernel_image: str) -> Iterator[str]:
    """The python kernel test image, also tagged ``<unique repository>:latest``."""
    repository = f"gpuenv-test-pins/pid{os.getpid()}-{uuid.uuid4().hex[:8]}"
    image = docker_client.images.get(python_kernel_image)
    image.tag(repository, "latest")
    try:
        yield f"{repository}:latest"
    finally:
        docker_client.images.remove(f"{repository}:latest")


pytestmark = pytest.mark.docker


def test_an_image_never_pushed_is_pinned_by_its_id(
    docker_client: docker.DockerClient, latest_image: str
) -> None:
    digest = image_digest(docker_client, latest_image, latest_image)
    assert digest is not None
    assert digest.source == "image id"
    assert digest.value == docker_client.images.get(latest_image).id
    assert latest_image in digest.repo_tags
    assert image_digest(docker_client, f"{latest_image}-absent") is None


def test_docker_export_records_the_image_digest(
    make_catalog, docker_client: docker.DockerClient, latest_image: str
) -> None:
    catalog = make_catalog(docker_images={"moving": latest_image})
    (env,) = catalog.list_environments_sync()
    _, text = catalog.export_sync(env.id)
    image_id = docker_client.images.get(latest_image).id
    head = text.splitlines()[:2]
    assert head[0] == f"# image: {latest_image}"
    assert head[1].startswith(f"# image digest: {image_id} (image id: ")
    assert "no RepoDigests" in head[1]
    assert yaml.safe_load(text)["name"] == "moving"  # still an environment.yml for conda
