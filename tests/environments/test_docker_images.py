"""Docker environments with the real test images: probes in throw-away containers, labels,
conda envs inside images, export from inside, and a Docker engine that cannot be reached."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.docker.runs import run_in_image
from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.errors import DockerUnavailable
from tests.support.conda_prefix import make_conda_prefix

pytestmark = pytest.mark.docker

TAG_PREFIX = f"gpuenv-test-catalog/pid{os.getpid()}"
UNREACHABLE = "unix:///nonexistent/gpuenv-test/docker.sock"


def by_name(environments: list[Environment]) -> dict[str, Environment]:
    return {env.name: env for env in environments}


def our_containers(client: docker.DockerClient) -> list:
    """Probe/export containers this test process started and that still exist."""
    return client.containers.list(
        all=True, filters={"label": [f"{labels.SERVER_PID}={os.getpid()}"]}
    )


def build(client: docker.DockerClient, tag: str, dockerfile: str, context: Path | None = None):
    if context is None:
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    else:
        (context / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        client.images.build(path=str(context), tag=tag, rm=True)
    return tag


@pytest.fixture(scope="module")
def built_images(docker_client, python_kernel_image, tmp_path_factory) -> Iterator[dict]:
    """Small images FROM the test images (LABEL/COPY only, nothing downloaded)."""
    tags = {
        "labelled": f"{TAG_PREFIX}-labelled:1",
        "layer": f"{TAG_PREFIX}-layer:1",
        "conda": f"{TAG_PREFIX}-conda:1",
    }
    build(
        docker_client,
        tags["labelled"],
        f"FROM {python_kernel_image}\n"
        f'LABEL {labels.IMAGE_ENABLE}="true" {labels.IMAGE_DISPLAY_NAME}="Team image"\n',
    )
    # what the provisioner's ipykernel layer looks like: it inherits the opt-in label
    build(
        docker_client,
        tags["layer"],
        f'FROM {tags["labelled"]}\nLABEL {labels.LAYER_BASE_ID}="sha256:0"\n',
    )
    context = tmp_path_factory.mktemp("conda-image")
    root = context / "conda"
    python_record = ("python", "3.11.2", "h2755cc3_0_cpython", "conda-forge")
    make_conda_prefix(root, name="base", python=False, packages=[python_record])
    (root / ".condarc").write_text("channels:\n  - conda-forge\n", encoding="utf-8")
    ml = make_conda_prefix(
        root / "envs" / "ml",
        python=False,
        packages=[python_record, ("numpy", "1.26.4", "py311h64a7726_0", "conda-forge")],
        pip_packages=[("torchinfo", "1.8.0")],
    )
    for prefix in (root, ml):
        (prefix / "bin").mkdir(exist_ok=True)
        (prefix / "bin" / "python").symlink_to("/usr/bin/python3")
    build(
        docker_client,
        tags["conda"],
        f"FROM {python_kernel_image}\nCOPY conda /opt/conda\n",
        context,
    )
    yield tags
    for tag in reversed(tags.values()):
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def test_real_images_list_with_probed_versions(
    make_catalog, docker_client, torch_cpu_image, python_kernel_image, bare_python_image
) -> None:
    catalog = make_catalog(
        docker_images={
            "torch": torch_cpu_image,
            "plain": {
                "image": python_kernel_image,
                "display_name": "Plain Python 3",
                "gpus": "none",
            },
            "bare": bare_python_image,
            "ghost": "gpuenv-test/ghost:missing",
        }
    )
    listed = by_name(catalog.list_environments_sync())
    torch_env = listed["torch"]
    assert torch_env.kind == "docker"
    assert torch_env.torch_version == "2.13.0+cpu"
    assert torch_env.cuda_version is None and torch_env.cudnn_version is None
    assert torch_env.torch_arch_list == []
    assert torch_env.display_name == "torch (docker) · PyTorch 2.13 · CPU"
    assert torch_env.ipykernel is True and torch_env.problems == []
    assert torch_env.python_version.startswith("3.11.")
    image_id = docker_client.images.get(torch_cpu_image).id
    assert torch_env.location == {
        "image": torch_cpu_image,
        "image_id": image_id,
        "conda_env": None,
        "tags": [torch_cpu_image],
    }
    assert "org.opencontainers.image.title" in torch_env.labels
    plain = listed["plain"]
    assert plain.display_name == "Plain Python 3"
    assert plain.settings["gpus"] == "none" and plain.torch_version is None
    # no ipykernel in an image is no problem: the provisioner adds a kernel layer
    assert listed["bare"].ipykernel is False and listed["bare"].problems == []
    assert "not present locally" in listed["ghost"].problems[0]
    assert listed["ghost"].location["image_id"] is None
    assert catalog.probe_counter.docker == 3
    catalog.list_environments_sync()
    assert catalog.probe_counter.docker == 3
    assert our_containers(docker_client) == []


def test_labelled_images_and_conda_envs_inside_images(
    make_catalog, docker_client, built_images
) -> None:
    conda_image = built_images["conda"]
    catalog = make_catalog(
        docker_label_discovery=True,
        docker_images={
            "ml": {"image": conda_image, "conda_env": "ml"},
            "condabase": {"image": conda_image, "conda_env": "base"},
        },
    )
    listed = by_name(catalog.list_environments_sync())
    labelled = listed[built_images["labelled"]]
    assert labelled.display_name == "Team image"
    assert labelled.labels[labels.IMAGE_ENABLE] == "true"
    assert labelled.ipykernel is True
    assert not any(env.location["image"] == built_images["layer"] for env in listed.values())
    ml = listed["ml"]
    assert ml.location["conda_env"] == "ml"
    assert ml.python_executable == "/opt/conda/envs/ml/bin/python"
    assert listed["condabase"].python_executable == "/opt/conda/bin/python"

    _, text = catalog.export_sync(ml.id)
    image_id = docker_client.images.get(built_images["conda"]).id
    assert text == (
        f"# image: {built_images['conda']}\n"
        f"# image digest: {image_id} (image id: the image has no RepoDigests, it was built or "
        "loaded locally and never pushed to or pulled from a registry)\n"
        "name: ml\n"
        "channels:\n"
        "  - conda-forge\n"
        "dependencies:\n"
        "  - numpy=1.26.4=py311h64a7726_0\n"
        "  - python=3.11.2=h2755cc3_0_cpython\n"
        "  - pip:\n"
        "      - torchinfo==1.8.0\n"
        "prefix: /opt/conda/envs/ml\n"
    )
    _, base = catalog.export_sync("condabase", no_builds=True)
    assert yaml.safe_load(base) == {
        "name": "condabase",
        "channels": ["conda-forge"],
        "dependencies": ["python=3.11.2"],
        "prefix": "/opt/conda",
    }
    assert our_containers(docker_client) == []


def test_pip_images_export_their_python_packages(
    make_catalog, docker_client, torch_cpu_image
) -> None:
    catalog = make_catalog(docker_images={"torch": torch_cpu_image})
    (env,) = catalog.list_environments_sync()
    filename, text = catalog.export_sync(env.id)
    assert filename == "torch-environment.yml"
    data = yaml.safe_load(text)
    assert data["name"] == "torch"
    assert data["dependencies"][:2] == [f"python={env.python_version}", "pip"]
    pip = data["dependencies"][2]["pip"]
    assert {"torch==2.13.0+cpu", "ipykernel==7.4.0", "numpy==2.4.6"} <= set(pip)
    assert not any(line.startswith("pip==") for line in pip)
    assert "prefix" not in data
    _, history = catalog.export_sync(env.id, from_history=True)
    requested = yaml.safe_load(history)["dependencies"][2]["pip"]
    assert requested == ["ipykernel==7.4.0", "numpy==2.4.6", "torch==2.13.0+cpu"]
    assert our_containers(docker_client) == []


def test_docker_down_keeps_local_environments_listed(
    make_catalog, monkeypatch, tmp_path: Path, conda_prefix_factory, torch_cpu_image, built_images
) -> None:
    local = conda_prefix_factory(tmp_path / "envs" / "local")
    catalog = make_catalog(
        conda_envs_dirs=[str(local.parent)],
        docker_label_discovery=True,
        docker_images={"torch": torch_cpu_image},
    )
    before = by_name(catalog.list_environments_sync())
    labelled_name = built_images["labelled"]
    assert before[labelled_name].problems == []
    monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)
    after = by_name(catalog.list_environments_sync(refresh=True))
    assert after["local"].problems == [] and after["local"].python_version
    for name in ("torch", labelled_name):
        (problem,) = after[name].problems
        assert problem.startswith("Docker daemon is not reachable")
        assert after[name].location["image_id"] is None
    # what the last probe found is still shown
    assert after["torch"].torch_version == "2.13.0+cpu"
    with pytest.raises(DockerUnavailable) as info:
        catalog.export_sync(after["torch"].id)
    assert info.value.status == 503


def test_docker_down_from_the_start(make_catalog, monkeypatch, tmp_path, conda_prefix_factory):
    local = conda_prefix_factory(tmp_path / "envs" / "local")
    monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)
    catalog = make_catalog(
        conda_envs_dirs=[str(local.parent)],
        docker_label_discovery=True,
        docker_images={"torch": "pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime"},
    )
    listed = by_name(catalog.list_environments_sync())
    assert listed["local"].problems == []
    assert listed["torch"].problems[0].startswith("Docker daemon is not reachable")
    assert listed["torch"].display_name == "torch (docker)"


def test_code_in_images_runs_unprivileged_offline_and_bounded(docker_client, python_kernel_image):
    check = (
        "import os, socket\n"
        "print('uid', os.getuid())\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
        "except OSError as exc:\n"
        "    print('network', type(exc).__name__)\n"
        "print('interfaces', sorted(name for _, name in socket.if_nameindex()))\n"
    )
    run = run_in_image(docker_client, python_kernel_image, ["python3", "-c", check], "probe", 60)
    assert run.exit_code == 0, run.stderr
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    assert lines["uid"] != "0"
    assert lines["interfaces"] == "['lo']"
    slow = run_in_image(
        docker_client,
        python_kernel_image,
        ["python3", "-c", "import time; time.sleep(60)"],
        "probe",
        2,
    )
    assert slow.timed_out and slow.exit_code is None
    assert our_containers(docker_client) == []
