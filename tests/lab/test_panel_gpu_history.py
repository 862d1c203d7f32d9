"""Sparklines of GPU use in the panel's GPU cards and kernel lines, in a real browser.

The ``jupyter lab`` under test samples a fake NVML (the test-only server extension
``tests.lab.fake_gpu_server``: an A100 at 64 % with 52 of 80 GiB used, the server's
kernels on it with 3 GiB each). The sampler's history, ``?history=``, the poll and the
drawing are the real ones: after a few samples each card draws lines through points at
the heights those figures give.
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
    row,
    screenshot_panel,
    set_sidebar_width,
    wait_for_kernel,
)
from tests.support.conda_prefix import make_conda_prefix
from tests.support.fake_torch import TORCH_CU121

pytestmark = [pytest.mark.browser]

CARD = f"{PANEL} li.jp-GpuEnv-gpu"
# The SVG box of a sparkline is 200 x 24 with 1 px kept free at the top and bottom.
HEIGHT, PAD = 24, 1


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("lab-gpu-history")
    envs_dir = base / "conda-envs"
    make_conda_prefix(envs_dir / "sparkvision", torch=TORCH_CU121)
    server = start_lab(
        base,
        {
            "conda_envs_dirs": [str(envs_dir)],
            "gpu_sample_interval": 0.5,
            "gpu_history_seconds": 60,
        },
        extra_extensions=("tests.lab.fake_gpu_server",),
    )
    try:
        yield server
    finally:
        server.stop()


def wait_for_points(page: Any, selector: str, at_least: int) -> Any:
    """The sparkline at ``selector`` once it draws ``at_least`` points."""
    page.wait_for_function(
        """([selector, n]) => {
            const svg = document.querySelector(selector);
            return !!svg && Number(svg.getAttribute('data-points')) >= n;
        }""",
        arg=[selector, at_least],
        timeout=60_000,
    )
    return page.locator(selector)


def heights(spark: Any) -> list[float]:
    """The y coordinates of the points a sparkline's path goes through."""
    d = spark.locator("path").get_attribute("d") or ""
    return [float(y) for y in re.findall(r"[ML]-?[\d.]+ (-?[\d.]+)", d)]


def expected_y(fraction: float) -> float:
    return round(PAD + (HEIGHT - 2 * PAD) * (1 - fraction), 1)


def test_gpu_cards_draw_utilization_and_memory_over_time(page: Any, lab: LabServer) -> None:
    open_panel(page)
    util = wait_for_points(page, f"{CARD}:nth-child(1) .jp-mod-util svg.jp-GpuEnv-spark", 3)
    memory = wait_for_points(page, f"{CARD}:nth-child(1) .jp-mod-memory svg.jp-GpuEnv-spark", 3)
    assert "utilization over time" in (util.get_attribute("aria-label") or "")
    # The fake A100 stays at 64 % and 52 of 80 GiB: flat lines at those heights.
    util_y, memory_y = heights(util), heights(memory)
    assert len(util_y) >= 3 and set(util_y) == {expected_y(0.64)}
    assert len(memory_y) >= 3 and set(memory_y) == {expected_y(52 / 80)}
    # The L4 (97 %, 22 of 24 GiB) has its own lines.
    l4 = heights(
        wait_for_points(page, f"{CARD}:nth-child(2) .jp-mod-util svg.jp-GpuEnv-spark", 3)
    )
    assert set(l4) == {expected_y(0.97)}
    # Both ends stay bounded by the 60 s window at one sample per 0.5 s.
    history = lab.api("gpuenv/api/gpus?history=600")["history"]
    assert history["seconds"] == 60 and len(history["timestamps"]) <= 120
    assert int(util.get_attribute("data-points") or 0) <= 121
    # Once the panel holds the window, a poll asks only for what is new since the last.
    poll = page.wait_for_event("request", lambda r: "/gpuenv/api/gpus?history=" in r.url)
    asked = float(re.search(r"history=([\d.]+)", poll.url).group(1))
    assert 5 <= asked < 60


def test_a_kernels_gpu_memory_over_time_in_its_line(
    page: Any, lab: LabServer, artifacts_dir: Path
) -> None:
    env = next(
        e for e in lab.api("gpuenv/api/environments")["environments"] if e["name"] == "sparkvision"
    )
    open_panel(page)
    row(page, env).get_by_role("button", name=re.compile("^New notebook")).click()
    wait_for_kernel(page, env["kernel_name"])
    open_panel(page)
    spark = wait_for_points(
        page, f"{CARD}:nth-child(1) .jp-GpuEnv-proc.jp-mod-kernel svg.jp-GpuEnv-procSpark", 2
    )
    assert "GPU memory of Untitled" in (spark.get_attribute("aria-label") or "")
    # 3 GiB all along, charted from zero to its own largest value: the top edge.
    assert set(heights(spark)) == {expected_y(1.0)}
    set_sidebar_width(page, 300)
    screenshot_panel(page, artifacts_dir / "gpuenv-panel-gpu-history-300.png")
