"""An idle kernel holding a GPU: warned in the status bar and the panel, then shut down.

The ``jupyter lab`` under test samples a fake NVML (``tests.lab.fake_gpu_server``) that
lists the real PIDs of its kernels on GPU 0 with 3 GiB each; with
``c.GpuEnv.gpu_idle_timeout`` the server's own reclaimer does the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import PANEL, open_panel, row, wait_for_kernel
from tests.support.conda_prefix import make_conda_prefix

pytestmark = [pytest.mark.browser]

TIMEOUT, WARNING = 50.0, 45.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("lab-idle")
    envs_dir = base / "conda-envs"
    make_conda_prefix(envs_dir / "idler")
    server = start_lab(
        base,
        {
            "conda_envs_dirs": [str(envs_dir)],
            "gpu_sample_interval": 0.5,
            "gpu_idle_timeout": TIMEOUT,
            "gpu_idle_warning": WARNING,
        },
        extra_extensions=("tests.lab.fake_gpu_server",),
    )
    try:
        yield server
    finally:
        server.stop()


def test_idle_gpu_kernel_is_warned_then_reclaimed(page: Any, lab: LabServer) -> None:
    (idler,) = lab.api("gpuenv/api/environments")["environments"]
    open_panel(page)
    row(page, idler).get_by_role("button", name=re.compile("^New notebook")).click()
    wait_for_kernel(page, idler["kernel_name"])

    warning = page.locator(".jp-GpuEnv-statusWarning")
    warning.wait_for(timeout=40_000)
    assert warning.inner_text().startswith("⚠ idle GPU kernel: shut down at")
    proc = page.locator(f"{PANEL} li.jp-GpuEnv-proc.jp-mod-kernel").first
    assert re.search(r"idle \d+m \d\ds", proc.inner_text()), proc.inner_text()
    reclaim = proc.locator(".jp-GpuEnv-procReclaim").inner_text()
    assert "will be shut down to free the GPU" in reclaim
    page.get_by_text(re.compile("will be shut down to free the GPU")).first.wait_for()

    freed = page.get_by_text(re.compile(r"freed 3\.0 GiB of GPU memory"))
    freed.first.wait_for(timeout=90_000)
    listing = lab.api("gpuenv/api/kernels")
    assert listing["kernels"] == []
    (gone,) = listing["reclaimed"]
    assert gone["gpu_memory"] == 3 * 2**30
