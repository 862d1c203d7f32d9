"""The Lab says why a gpuenv kernel restarted, in a real browser against a real ``jupyter lab``.

A container kernel limited to 100 MiB fills far more memory; Docker's OOM killer ends it,
jupyter_client restarts it, and the page shows the reason the server kept
("killed: out of memory (limit 100 MiB, mem_limit)") next to Lab's own restart notice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from jupyter_gpuenv.docker import labels
from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import KERNEL_START_MS, open_panel, row, wait_for_kernel

pytestmark = [pytest.mark.browser, pytest.mark.docker]

REASON = "killed: out of memory (limit 100 MiB, mem_limit)"


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory,
    python_kernel_image: str,
    docker_client: docker.DockerClient,
) -> Iterator[LabServer]:
    server = start_lab(
        tmp_path_factory.mktemp("lab-restart"),
        {
            "docker_images": {"small": {"image": python_kernel_image, "mem_limit": "100m"}},
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


def test_out_of_memory_restart_shows_the_reason(page: Any, lab: LabServer) -> None:
    (small,) = lab.api("gpuenv/api/environments")["environments"]
    open_panel(page)
    row(page, small).get_by_role("button", name=re.compile("^New notebook")).click()
    wait_for_kernel(page, small["kernel_name"])
    page.click(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content")
    page.keyboard.type("blob = b'x' * (900 * 2**20)")
    page.keyboard.press("Shift+Enter")
    notice = page.get_by_text(re.compile(re.escape(f"the kernel restarted — {REASON}")))
    notice.first.wait_for(timeout=KERNEL_START_MS)
    assert "Untitled" in notice.first.inner_text()
    (kernel,) = lab.api("gpuenv/api/kernels")["kernels"]
    assert kernel["restart_count"] == 1 and kernel["last_exit"]["reason"] == REASON
