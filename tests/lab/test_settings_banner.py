"""The panel's banner for invalid settings, in a real browser against a real ``jupyter lab``.

The server's config file holds invalid ``c.GpuEnv`` values beside a valid conda env: the
panel still lists the env, and the banner names each invalid setting with its value and
what was expected; the invalid ``docker_images`` entry is listed with its problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import PANEL, open_panel, row, screenshot_panel
from tests.support.conda_prefix import make_conda_prefix
from tests.support.fake_torch import TORCH_CU121

pytestmark = pytest.mark.browser

BANNER = f"{PANEL} .jp-GpuEnv-settingsBanner"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("lab-settings")
    envs_dir = base / "conda-envs"
    make_conda_prefix(envs_dir / "vision", torch=TORCH_CU121)
    server = start_lab(
        base,
        {
            "conda_envs_dirs": [str(envs_dir)],
            "docker_images": {"typo": {"imgae": "team/vision:1"}},
            "probe_timeout": "fast",
            "gpu_idle_warning": [300],
        },
    )
    try:
        yield server
    finally:
        server.stop()


def test_banner_names_each_invalid_setting(page: Any, lab: LabServer) -> None:
    open_panel(page)
    banner = page.locator(BANNER)
    banner.wait_for()
    assert banner.get_attribute("role") == "alert"
    text = banner.inner_text()
    assert "3 invalid settings in the server's configuration" in text
    items = banner.locator("li")
    assert items.count() == 3
    lines = [items.nth(i).inner_text() for i in range(3)]
    by_setting = {line.split(" = ", 1)[0]: line for line in lines}
    assert set(by_setting) == {
        "c.GpuEnv.probe_timeout",
        "c.GpuEnv.gpu_idle_warning",
        "c.GpuEnv.docker_images['typo']",
    }, lines
    assert "'fast'" in by_setting["c.GpuEnv.probe_timeout"]
    assert "expected a float; the default (60.0) is used" in by_setting["c.GpuEnv.probe_timeout"]
    assert "imgae" in by_setting["c.GpuEnv.docker_images['typo']"]
    assert "listed without a kernel" in by_setting["c.GpuEnv.docker_images['typo']"]


def test_valid_environments_are_listed_beside_the_banner(page: Any, lab: LabServer) -> None:
    listing = lab.api("gpuenv/api/environments")
    by_name = {env["name"]: env for env in listing["environments"]}
    open_panel(page)
    vision = row(page, by_name["vision"])
    vision.wait_for()
    assert "PyTorch" in vision.inner_text()
    typo = row(page, by_name["typo"])
    typo.wait_for()
    assert by_name["typo"]["cannot_start"]


def test_banner_screenshot(page: Any, artifacts_dir: Path) -> None:
    open_panel(page)
    page.locator(BANNER).wait_for()
    screenshot_panel(page, artifacts_dir / "panel-invalid-settings.png")
