"""Long work shows progress in a real browser against a real ``jupyter lab``.

The first listing probes a venv whose interpreter takes seconds to start: the panel says
"Probing 1 of 2 environments" and shows the environment already probed. Then a notebook
in a fresh copy of an image without ipykernel builds its kernel layer: a notification
follows the steps and ends with the kernel ready.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from jupyter_gpuenv.docker import labels
from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import KERNEL_START_MS, PANEL, open_panel, row, wait_for_kernel
from tests.support.slow_work import fresh_image, slow_venv

pytestmark = [pytest.mark.browser, pytest.mark.docker]



@pytest.fixture(scope="module")
def fresh_bare(docker_client: docker.DockerClient, bare_python_image: str) -> Iterator[str]:
    with fresh_image(docker_client, bare_python_image, "lab-progress") as tag:
        yield tag


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory,
    fresh_bare: str,
    docker_client: docker.DockerClient,
) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("lab-progress")
    venvs = Path(base, "venvs")
    # Its probe ends when the test creates the gate file, whenever the page has loaded.
    slow_venv(venvs / "slowpoke", gate=base / "probe-gate")
    server = start_lab(
        base,
        {
            "venv_dirs": [str(venvs)],
            "docker_images": {"fresh": fresh_bare},
            "probe_timeout": 600,
        },
    )
    try:
        yield server
    finally:
        pid = server.process.pid
        server.stop()
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{labels.SERVER_PID}={pid}"}
        ):
            container.remove(force=True)


def test_the_panel_shows_probing_progress_and_the_probed_environments(
    page: Any, lab: LabServer
) -> None:
    open_panel(page)
    scan = page.locator(f"{PANEL} .jp-GpuEnv-scan")
    scan.get_by_text(re.compile(r"Probing 1 of 2 environments")).wait_for()
    # The image is probed in a second or two; it is listed while the venv is not yet.
    fresh = page.locator(f"{PANEL} li.jp-GpuEnv-env", has_text="fresh")
    fresh.wait_for()
    assert page.locator(f"{PANEL} li.jp-GpuEnv-env", has_text="slowpoke").count() == 0
    assert scan.locator("progress").get_attribute("value") == "1"
    # When the scan ends the line goes and both are listed.
    Path(lab.root_dir.parent, "probe-gate").touch()
    scan.wait_for(state="detached")
    page.locator(f"{PANEL} li.jp-GpuEnv-env", has_text="slowpoke").wait_for()


def test_a_kernel_layer_build_shows_its_steps_in_a_notification(
    page: Any, lab: LabServer
) -> None:
    Path(lab.root_dir.parent, "probe-gate").touch()  # the first scan ends, whatever came before
    envs = lab.api("gpuenv/api/environments")["environments"]
    (fresh,) = [env for env in envs if env["name"] == "fresh"]
    open_panel(page)
    row(page, fresh).get_by_role("button", name=re.compile("^New notebook")).click()
    building = page.get_by_text(re.compile(r"Starting fresh \(step \d\): Kernel layer: "))
    building.first.wait_for(timeout=KERNEL_START_MS)
    page.get_by_text(re.compile(r"fresh: Kernel ready in \d+\.\d s")).first.wait_for(
        timeout=KERNEL_START_MS
    )
    wait_for_kernel(page, fresh["kernel_name"])
    (start,) = [
        s for s in lab.api("gpuenv/api/progress")["starts"] if s["environment"]["name"] == "fresh"
    ]
    assert start["state"] == "ready"
    assert "kernel-layer-build" in [step["key"] for step in start["steps"]]
