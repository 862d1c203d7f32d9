"""The panel's GPU section and status bar item with GPUs, in a real browser.

This machine has no GPU, so the ``jupyter lab`` under test samples a fake NVML (enabled
by the test-only server extension ``tests.lab.fake_gpu_server``) that lists the real
host PIDs of the server's kernels on GPU 0. Everything after NVML is real: the sampler,
PID -> kernel -> notebook attribution, the REST endpoint, the poll and the rendering.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import (
    PANEL,
    open_panel,
    overflowing,
    row,
    screenshot_panel,
    set_sidebar_width,
    switch_theme,
    wait_for_kernel,
)
from tests.support.conda_prefix import make_conda_prefix
from tests.support.fake_torch import TORCH_CU121

pytestmark = [pytest.mark.browser]

CARD = f"{PANEL} li.jp-GpuEnv-gpu"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("lab-gpus")
    envs_dir = base / "conda-envs"
    make_conda_prefix(envs_dir / "vision", torch=TORCH_CU121)
    server = start_lab(
        base,
        {
            "conda_envs_dirs": [str(envs_dir)],
            "gpu_sample_interval": 0.5,
        },
        extra_extensions=("tests.lab.fake_gpu_server",),
    )
    try:
        yield server
    finally:
        server.stop()


def test_each_gpu_gets_a_card_with_a_memory_bar(page: Any) -> None:
    open_panel(page)
    page.wait_for_selector(f"{CARD} >> nth=1")
    cards = page.locator(CARD)
    assert cards.count() == 2
    first, second = cards.nth(0), cards.nth(1)
    assert "GPU 0" in first.inner_text() and "NVIDIA A100-SXM4-80GB" in first.inner_text()
    assert "52.0 GiB / 80.0 GiB" in first.inner_text()
    assert "Util 64 %" in first.inner_text()
    meter = first.locator("[role=meter]")
    assert meter.get_attribute("aria-valuenow") == "65"
    # 22 of 24 GiB used: the bar turns to the error colour.
    assert "jp-mod-high" in (second.locator(".jp-GpuEnv-meterFill").get_attribute("class") or "")
    # Another user's process on GPU 1 is counted, not shown.
    assert "1 process of other users" in second.inner_text()
    assert "Driver" in page.locator(f"{PANEL} #gpuenv-gpus-heading").inner_text()


def test_a_kernel_on_a_gpu_is_listed_by_notebook_and_in_the_status_bar(
    page: Any, lab: LabServer
) -> None:
    vision = next(
        e for e in lab.api("gpuenv/api/environments")["environments"] if e["name"] == "vision"
    )
    open_panel(page)
    row(page, vision).get_by_role("button", name=re.compile("^New notebook")).click()
    wait_for_kernel(page, vision["kernel_name"])
    proc = page.locator(f"{CARD} >> nth=0").locator(".jp-GpuEnv-proc.jp-mod-kernel")
    proc.wait_for()
    text = proc.inner_text()
    assert "Untitled.ipynb" in text
    assert "vision (conda)" in text
    assert "3.0 GiB" in text
    status = page.locator(".jp-GpuEnv-statusButton")
    page.wait_for_function(
        "() => (document.querySelector('.jp-GpuEnv-statusButton') || {}).innerText"
        " === 'vision · 3.0 GiB on GPU 0'"
    )
    assert vision["display_name"] in (status.get_attribute("title") or "")


def test_poll_pauses_while_the_panel_is_hidden(page: Any, lab: LabServer) -> None:
    """Closing the sidebar stops GPU requests once nothing shows GPU figures."""
    # With no notebook open the status bar needs no GPU figures either.
    page.evaluate(
        "() => { for (const w of Array.from(window.jupyterapp.shell.widgets('main')))"
        " w.dispose(); }"
    )
    page.wait_for_selector(".jp-NotebookPanel", state="detached")
    page.wait_for_selector(".jp-GpuEnv-statusButton", state="detached")
    page.click('.lm-TabBar-tab[data-id="gpuenv-panel"]')  # collapse the sidebar
    page.wait_for_selector(PANEL, state="hidden")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/gpuenv/api/gpus" in r.url else None)
    page.wait_for_timeout(12_000)  # more than two poll intervals
    assert requests == []
    open_panel(page)
    page.wait_for_event("request", lambda r: "/gpuenv/api/gpus" in r.url, timeout=10_000)


def test_screenshots_with_gpus_light_and_dark(page: Any, artifacts_dir: Path) -> None:
    open_panel(page)
    set_sidebar_width(page, 300)
    page.locator(f"{CARD} .jp-GpuEnv-proc.jp-mod-kernel").first.wait_for()
    assert overflowing(page) == []
    screenshot_panel(page, artifacts_dir / "gpuenv-panel-gpus-light-300.png")
    switch_theme(page, "JupyterLab Dark")
    assert overflowing(page) == []
    screenshot_panel(page, artifacts_dir / "gpuenv-panel-gpus-dark-300.png")
    page.screenshot(path=str(artifacts_dir / "gpuenv-lab-gpus-dark.png"))


def test_an_unreachable_server_is_explained_and_retried(
    page: Any, lab: LabServer, artifacts_dir: Path
) -> None:
    """Last in this module: it stops the server."""
    open_panel(page)
    lab.stop()
    error = page.locator(f"{PANEL} .jp-GpuEnv-error[data-status='0']")
    error.wait_for(timeout=30_000)
    text = error.inner_text()
    assert "Cannot reach the Jupyter server" in text
    assert re.search(r"Retrying in \d+ (s|min)", text), text
    screenshot_panel(page, artifacts_dir / "gpuenv-panel-unreachable-dark-300.png")
