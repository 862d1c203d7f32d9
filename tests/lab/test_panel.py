"""The GPU Environments panel in a real browser against a real ``jupyter lab``.

Environments are real: a conda prefix reporting a CUDA 12.1 PyTorch build and the CPU
PyTorch test image. The tests run in file order on one page: open the panel, start a
notebook in the conda env, switch it to the container with "Use in notebook", run a cell
there, export environment.yml files, then take the screenshots (light and dark, 300 px).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from jupyter_gpuenv.docker import labels
from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import (
    KERNEL_START_MS,
    PANEL,
    UI_MS,
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

pytestmark = [pytest.mark.browser, pytest.mark.docker]

NUMPY = ("numpy", "1.26.4", "py311h64a7726_0", "conda-forge")


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory,
    torch_cpu_image: str,
    docker_client: docker.DockerClient,
) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("lab-e2e")
    envs_dir = base / "conda-envs"
    make_conda_prefix(envs_dir / "vision", packages=[NUMPY], torch=TORCH_CU121)
    server = start_lab(
        base,
        {
            "conda_envs_dirs": [str(envs_dir)],
            "docker_images": {"torch-cpu": torch_cpu_image},
        },
    )
    try:
        yield server
    finally:
        pid = server.process.pid
        server.stop()
        # Anything this server's kernels left behind (normally nothing) goes too.
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{labels.SERVER_PID}={pid}"}
        ):
            container.remove(force=True)


@pytest.fixture(scope="module")
def envs(lab: LabServer) -> dict[str, dict[str, Any]]:
    """The catalog by name, from the same server the page talks to."""
    listing = lab.api("gpuenv/api/environments")["environments"]
    by_name = {env["name"]: env for env in listing}
    assert {"vision", "torch-cpu"} <= set(by_name), listing
    return by_name


def test_panel_lists_environments_with_versions(page: Any, envs: dict[str, Any]) -> None:
    open_panel(page)
    assert page.locator(f"{PANEL} .jp-GpuEnv-title").inner_text().lower() == "gpu environments"
    vision = row(page, envs["vision"])
    vision.wait_for()
    text = vision.inner_text()
    assert envs["vision"]["display_name"] in text
    assert "2.9.0+cu121" in text and "12.1" in text
    assert envs["vision"]["python_version"] in text
    assert vision.locator(".jp-GpuEnv-kind").inner_text() == "conda"

    docker_row = row(page, envs["torch-cpu"])
    text = docker_row.inner_text()
    assert "2.13.0+cpu" in text and "CPU build" in text
    assert docker_row.locator(".jp-GpuEnv-kind").inner_text() == "docker"
    # No notebook is open yet: nothing to switch.
    use = docker_row.get_by_role("button", name=re.compile("^Use in current notebook"))
    assert use.is_disabled()


def test_refresh_rescans_on_the_server(page: Any, envs: dict[str, Any]) -> None:
    open_panel(page)
    with page.expect_response(
        lambda r: "/gpuenv/api/environments/refresh" in r.url, timeout=UI_MS
    ) as response_info:
        page.get_by_role("button", name="Refresh environments and GPU status").click()
    response = response_info.value
    assert response.request.method == "POST" and response.status == 200
    ids = {env["id"] for env in response.json()["environments"]}
    assert {envs["vision"]["id"], envs["torch-cpu"]["id"]} <= ids
    row(page, envs["torch-cpu"]).wait_for()


def test_doctor_verdict_is_a_badge_with_its_findings(page: Any, envs: dict[str, Any]) -> None:
    compatibility = envs["vision"].get("compatibility") or {}
    problems = [f for f in compatibility.get("findings", []) if f["severity"] != "ok"]
    badge = row(page, envs["vision"]).locator(".jp-GpuEnv-compat")
    if not problems:
        assert badge.count() == 0
        return
    assert badge.locator(".jp-GpuEnv-badge").inner_text() in ("Warning", "Incompatible")
    assert problems[0]["message"] in (badge.locator("summary").get_attribute("title") or "")
    badge.locator("summary").click()
    for finding in problems:
        assert finding["message"] in badge.inner_text()


def test_use_in_current_notebook_runs_the_cell_in_the_container(
    page: Any, envs: dict[str, Any]
) -> None:
    vision, torch_cpu = envs["vision"], envs["torch-cpu"]
    open_panel(page)
    row(page, vision).get_by_role("button", name=re.compile("^New notebook")).click()
    wait_for_kernel(page, vision["kernel_name"])
    page.wait_for_selector(f'{PANEL} li.jp-mod-active[data-env-id="{vision["id"]}"]')
    assert "In use by Untitled" in row(page, vision).inner_text()

    row(page, torch_cpu).get_by_role("button", name=re.compile("^Use in current notebook")).click()
    wait_for_kernel(page, torch_cpu["kernel_name"])
    page.wait_for_selector(f'{PANEL} li.jp-mod-active[data-env-id="{torch_cpu["id"]}"]')
    assert "jp-mod-active" not in (row(page, vision).get_attribute("class") or "")

    page.click(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content")
    page.keyboard.type("import torch, os; print(torch.__version__, os.path.exists('/.dockerenv'))")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").first
    output.wait_for(timeout=KERNEL_START_MS)
    assert output.inner_text().strip() == "2.13.0+cpu True"

    status = page.locator(".jp-GpuEnv-statusButton")
    status.wait_for()
    assert status.inner_text().startswith(torch_cpu["name"])
    assert torch_cpu["display_name"] in (status.get_attribute("title") or "")


@pytest.mark.parametrize("mode", ["full", "no-builds", "from-history"])
def test_export_downloads_a_valid_environment_yml(
    page: Any, envs: dict[str, Any], mode: str, artifacts_dir: Path
) -> None:
    vision = envs["vision"]
    open_panel(page)
    vision_row = row(page, vision)
    vision_row.get_by_role("button", name=re.compile("^Export environment.yml")).click()
    with page.expect_download(timeout=UI_MS) as download_info:
        vision_row.locator(f'[data-export-mode="{mode}"]').click()
    download = download_info.value
    assert download.suggested_filename.endswith((".yml", ".yaml"))
    target = artifacts_dir / f"export-{mode}-{download.suggested_filename}"
    download.save_as(target)
    document = yaml.safe_load(target.read_text())
    assert document["name"] == "vision"
    conda_deps = [d for d in document["dependencies"] if isinstance(d, str)]
    by_name = {d.split("=")[0]: d for d in conda_deps}
    if mode == "full":
        assert by_name["numpy"] == "numpy=1.26.4=py311h64a7726_0"
    elif mode == "no-builds":
        assert by_name["numpy"] == "numpy=1.26.4"
        assert all(d.count("=") == 1 for d in conda_deps), conda_deps
    else:
        # Only what was asked for at creation, as conda's history recorded it.
        assert by_name["numpy"] == "numpy=1.26.4"
        assert "ipykernel" not in by_name, conda_deps


def test_gpu_section_shows_what_the_server_sees(page: Any, lab: LabServer) -> None:
    open_panel(page)
    status = lab.api("gpuenv/api/gpus")
    section = page.locator(f"{PANEL} section[aria-labelledby='gpuenv-gpus-heading']")
    if status["available"] and status["gpus"]:
        page.wait_for_selector(f"{PANEL} .jp-GpuEnv-gpu")
        assert section.locator(".jp-GpuEnv-gpu").count() == len(status["gpus"])
        assert section.locator("[role=meter]").count() == len(status["gpus"])
    else:
        no_gpu = section.locator(".jp-GpuEnv-noGpu")
        no_gpu.wait_for()
        page.wait_for_function(
            "() => !document.querySelector('#gpuenv-panel .jp-GpuEnv-noGpu')"
            ".innerText.includes('Reading GPU status')"
        )
        text = section.locator(".jp-GpuEnv-noGpu").inner_text()
        assert "No GPU visible" in text
        reason = lab.api("gpuenv/api/gpus")["reason"]
        assert reason and reason in text


def test_keyboard_reaches_every_action(page: Any) -> None:
    open_panel(page)
    buttons = page.locator(f"{PANEL} button")
    assert buttons.count() >= 7
    for i in range(buttons.count()):
        button = buttons.nth(i)
        name = button.get_attribute("aria-label") or button.inner_text().strip()
        assert name, button.evaluate("b => b.outerHTML")
        assert button.evaluate("b => b.tabIndex") >= 0
    page.focus(f"{PANEL} .jp-GpuEnv-iconButton")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => document.activeElement.closest('#gpuenv-panel li.jp-GpuEnv-env') !== null"
    )
    assert focused, "Tab from the refresh button should land on an environment's action"


def test_screenshots_light_and_dark_at_300px(page: Any, artifacts_dir: Path) -> None:
    open_panel(page)
    set_sidebar_width(page, 300)
    page.mouse.move(900, 500)
    assert overflowing(page) == []
    screenshot_panel(page, artifacts_dir / "gpuenv-panel-light-300.png")
    page.screenshot(path=str(artifacts_dir / "gpuenv-lab-light.png"))

    switch_theme(page, "JupyterLab Dark")
    assert overflowing(page) == []
    screenshot_panel(page, artifacts_dir / "gpuenv-panel-dark-300.png")
    page.screenshot(path=str(artifacts_dir / "gpuenv-lab-dark.png"))
