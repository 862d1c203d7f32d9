"""PyTorch images listed with no configuration, from their image config alone; the usual
conda install roots found with no conda CLI and no conda variables."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.environments.pytorch_images import (
    ImageConfig,
    environment_name,
    is_pytorch_image,
    is_pytorch_repository,
)
from tests.support.conda_prefix import make_conda_prefix
from tests.support.images import tag_as

OFFICIAL_REF = "pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime"
NGC_REF = "nvcr.io/nvidia/pytorch:24.08-py3"
UNIQUE = f"gpuenv-test-pytorch-{os.getpid()}"


def discovered(catalog, image_id: str) -> list[Environment]:
    """The listed environments of one image (other sessions' images may be listed too)."""
    envs = catalog.list_environments_sync(refresh=True)
    return [e for e in envs if e.kind == "docker" and e.location.get("image_id") == image_id]


def image_id(docker_client, image: str) -> str:
    return docker_client.images.get(image).id


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        (OFFICIAL_REF, "pytorch-2.9.0-cuda12.1-cudnn9-runtime"),
        (NGC_REF, "pytorch-24.08-py3"),
        ("registry.local:5000/team/vision:latest", "vision"),
        ("lab/vision", "vision"),
    ],
)
def test_names_come_from_repository_and_tag(reference, name):
    assert environment_name(reference) == name


def test_pytorch_repositories_and_version_variables():
    assert is_pytorch_repository("pytorch/pytorch")
    assert is_pytorch_repository("docker.io/pytorch/pytorch")
    assert is_pytorch_repository("nvcr.io/nvidia/pytorch")
    assert not is_pytorch_repository("pytorch/torchserve")
    assert not is_pytorch_repository("team/pytorch")
    plain = ImageConfig(env=("PATH=/usr/bin",), labels={})
    assert not is_pytorch_image(["team/vision:1"], plain)
    assert is_pytorch_image(["team/vision:1"], ImageConfig(("PYTORCH_VERSION=2.9.0",), {}))
    assert is_pytorch_image(["team/vision:1"], ImageConfig(("NVIDIA_PYTORCH_VERSION=24.08",), {}))
    assert not is_pytorch_image(["team/vision:1"], ImageConfig(("PYTORCH_VERSION=",), {}))
    assert is_pytorch_image(["pytorch/pytorch:latest"], plain)


@pytest.mark.docker
def test_official_and_ngc_layouts_listed_without_configuration(
    make_catalog, docker_client, pytorch_official_image, ngc_pytorch_image
):
    catalog = make_catalog(docker_discover_pytorch_images=True)
    official_id = image_id(docker_client, pytorch_official_image)
    ngc_id = image_id(docker_client, ngc_pytorch_image)
    with tag_as(pytorch_official_image, OFFICIAL_REF), tag_as(ngc_pytorch_image, NGC_REF):
        [official] = discovered(catalog, official_id)
        [ngc] = discovered(catalog, ngc_id)
    assert official.name == "pytorch-2.9.0-cuda12.1-cudnn9-runtime"
    assert official.display_name.endswith("(docker) · PyTorch 2.9 · CUDA 12.1")
    assert official.location["image"] == OFFICIAL_REF
    assert set(official.location["tags"]) == {OFFICIAL_REF, pytorch_official_image}
    assert (official.torch_version, official.cuda_version) == ("2.9.0", "12.1")
    assert ngc.name == "pytorch-24.08-py3"
    assert ngc.display_name.endswith("(docker) · PyTorch 2.5 · CUDA 12.6")
    assert set(ngc.location["tags"]) == {NGC_REF, ngc_pytorch_image}
    assert ngc.torch_version.startswith("2.5.0a0+872d972e41")
    for env in (official, ngc):
        assert not env.problems, env.problems


@pytest.mark.docker
def test_version_variable_alone_is_enough(make_catalog, docker_client, pytorch_official_image):
    """Under the test tag only: PYTORCH_VERSION decides, the name is the tag's."""
    catalog = make_catalog(docker_discover_pytorch_images=True)
    [env] = discovered(catalog, image_id(docker_client, pytorch_official_image))
    repository, tag = pytorch_official_image.split(":")
    assert env.name == f"{repository.rsplit('/', 1)[-1]}-{tag}"
    assert pytorch_official_image in env.location["tags"]


@pytest.mark.docker
def test_repository_name_alone_is_enough(make_catalog, docker_client, python_kernel_image):
    catalog = make_catalog(docker_discover_pytorch_images=True)
    kernel_id = image_id(docker_client, python_kernel_image)
    assert discovered(catalog, kernel_id) == []  # no PyTorch variable, no PyTorch name
    with tag_as(python_kernel_image, f"pytorch/pytorch:{UNIQUE}"):
        [env] = discovered(catalog, kernel_id)
    assert env.name == f"pytorch-{UNIQUE}"


@pytest.mark.docker
@pytest.mark.parametrize(
    "traits",
    [
        {"docker_discover_pytorch_images": False},
        {"docker_discover_pytorch_images": True, "restrict_to_configured_images": True},
    ],
)
def test_switched_off(make_catalog, docker_client, pytorch_official_image, traits):
    catalog = make_catalog(**traits)
    with tag_as(pytorch_official_image, OFFICIAL_REF):
        assert discovered(catalog, image_id(docker_client, pytorch_official_image)) == []


@pytest.mark.docker
def test_configured_and_layer_images_are_not_listed_twice(
    make_catalog, docker_client, pytorch_official_image
):
    """A configured image keeps its configured entry; the kernel layer built FROM an image
    inherits PYTORCH_VERSION but is ours, not an environment."""
    layer_tag = f"{UNIQUE}-layer:1"
    docker_client.images.build(
        fileobj=io.BytesIO(
            f'FROM {pytorch_official_image}\nLABEL {labels.LAYER_BASE_ID}="sha256:0"\n'.encode()
        ),
        tag=layer_tag,
        rm=True,
    )
    try:
        catalog = make_catalog(
            docker_discover_pytorch_images=True,
            docker_images={"torch": pytorch_official_image},
        )
        official_id = image_id(docker_client, pytorch_official_image)
        [env] = discovered(catalog, official_id)
        assert env.name == "torch"
        assert discovered(catalog, image_id(docker_client, layer_tag)) == []
    finally:
        docker_client.images.remove(layer_tag, force=True)


def test_common_conda_roots_without_cli_or_variables(make_catalog, isolated_conda_home: Path):
    """~/miniconda3 and its envs/ are found with no conda on PATH and no CONDA_* variables."""
    root = make_conda_prefix(isolated_conda_home / "miniconda3", name="base")
    (root / "condabin").mkdir()
    ml = make_conda_prefix(root / "envs" / "ml")
    forge = make_conda_prefix(isolated_conda_home / "miniforge3" / "envs" / "forge")
    (isolated_conda_home / "miniforge3" / "conda-meta").mkdir()
    catalog = make_catalog(conda_envs_dirs=None)
    found = {Path(e.location["prefix"]): e for e in catalog.list_environments_sync()}
    assert {root, ml, forge} <= set(found)
    assert found[root].name == "base"
    assert found[ml].name == "ml"
    assert found[forge].name == "forge"


@pytest.mark.docker
def test_image_configs_are_read_once_and_kept_on_disk(
    make_catalog, docker_client, pytorch_official_image, tmp_path
):
    """A new process (a new catalog on the same cache file) inspects no known image."""
    cache = tmp_path / "shared-cache" / "catalog.json"
    first = make_catalog(cache_path=cache, docker_discover_pytorch_images=True)
    official_id = image_id(docker_client, pytorch_official_image)
    assert len(discovered(first, official_id)) == 1
    inspected = first.sources.image_configs.inspected
    assert inspected >= 1
    discovered(first, official_id)  # a later scan of the same process
    assert first.sources.image_configs.inspected == inspected
    second = make_catalog(cache_path=cache, docker_discover_pytorch_images=True)
    [env] = discovered(second, official_id)
    assert env.name.startswith("pytorch-official-")
    # only images that appeared since (other test sessions share this engine) are new
    assert second.sources.image_configs.inspected < inspected
    assert second.probe_counter.total == 0
