"""The doctor flags environments whose image is named by a moving tag (real local images)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

pytestmark = pytest.mark.docker


@pytest.fixture
def tagged(docker_client: docker.DockerClient, python_kernel_image: str) -> Iterator[str]:
    """A unique repository holding the python kernel test image as ``:latest`` and ``:1.0``."""
    repository = f"gpuenv-test-doctor/pid{os.getpid()}-{uuid.uuid4().hex[:8]}"
    image = docker_client.images.get(python_kernel_image)
    for tag in ("latest", "1.0"):
        image.tag(repository, tag)
    try:
        yield repository
    finally:
        for tag in ("latest", "1.0"):
            docker_client.images.remove(f"{repository}:{tag}")


def doctor_json(tmp_path: Path, docker_images: dict[str, str]) -> tuple[int, dict, str]:
    config = tmp_path / "jupyter_server_config.py"
    config.write_text(
        "c.GpuEnv.conda_envs_dirs = []\n"
        "c.GpuEnv.venv_dirs = []\n"
        f"c.GpuEnv.docker_images = {docker_images!r}\n"
        "c.GpuEnv.docker_label_discovery = False\n"
        "c.GpuEnv.docker_discover_pytorch_images = False\n"
    )
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
    }
    results = []
    for extra in (["--json"], []):
        done = subprocess.run(
            [sys.executable, "-m", "jupyter_gpuenv.cli.main", "--config", str(config)]
            + ["doctor", *extra],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        results.append(done)
    return results[0].returncode, json.loads(results[0].stdout), results[1].stdout


def test_moving_tags_are_flagged_with_a_pin_to_use(
    tmp_path: Path, docker_client: docker.DockerClient, tagged: str
) -> None:
    image_id = docker_client.images.get(f"{tagged}:1.0").id
    status, report, text = doctor_json(
        tmp_path,
        {
            "latest": f"{tagged}:latest",
            "untagged": tagged,
            "pinned": f"{tagged}:1.0",
            "byid": image_id,
        },
    )
    assert status == 0, report  # a warning, not an error
    findings = {
        entry["name"]: [
            f for f in entry["findings"] if "moving tag" in f["message"] or "no tag" in f["message"]
        ]
        for entry in report["environments"]
    }
    assert findings["pinned"] == [] and findings["byid"] == []
    (latest,) = findings["latest"]
    assert latest["severity"] == "warning"
    assert latest["message"].startswith(
        f"image {tagged}:latest is referenced by the moving tag 'latest'"
    )
    assert f"a versioned tag such as {tagged}:1.0" in latest["fix"]
    assert "c.GpuEnv.docker_images['latest']" in latest["fix"]
    (untagged,) = findings["untagged"]
    assert "no tag (Docker reads it as 'latest')" in untagged["message"]
    assert f"WARNING image {tagged}:latest is referenced by the moving tag" in text


def test_an_image_with_only_a_moving_tag_is_told_to_get_a_version(
    tmp_path: Path, docker_client: docker.DockerClient, python_kernel_image: str
) -> None:
    """A new image (LABEL only, FROM the test image) whose only tag is ``latest``."""
    unique = uuid.uuid4().hex[:8]
    repository = f"gpuenv-test-doctor/pid{os.getpid()}-{unique}-only"
    dockerfile = f"FROM {python_kernel_image}\nLABEL org.jupyter.gpuenv.test-only={unique}\n"
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=f"{repository}:latest", rm=True
    )
    try:
        _, report, _ = doctor_json(tmp_path, {"only": f"{repository}:latest"})
    finally:
        docker_client.images.remove(image.id, force=True)
    (entry,) = report["environments"]
    (finding,) = [f for f in entry["findings"] if "moving tag" in f["message"]]
    assert f"docker tag {repository}:latest <repository>:<version>" in finding["fix"]
    assert f"its image id {image.id}" in finding["fix"]
