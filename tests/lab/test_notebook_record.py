"""Notebooks from another machine open in JupyterLab in their recorded environment.

The notebooks name a kernel this server does not have (another machine's environment id)
and carry ``metadata.gpuenv``: one whose packages are here under another name opens in it
with no dialog; one that only shares PyTorch and CUDA asks first. Switching the first to
the CPU build shows the mismatch in the panel and the status bar.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.environments.fingerprint import environment_fingerprint
from jupyter_gpuenv.environments.model import Environment
from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import (
    PANEL,
    open_panel,
    overflowing,
    row,
    screenshot_panel,
    set_sidebar_width,
    wait_for_kernel,
)
from tests.support.conda_prefix import make_conda_prefix
from tests.support.fake_torch import TORCH_CU121

pytestmark = [pytest.mark.browser]

TAG = uuid.uuid4().hex[:6]
TORCH_CPU = {**TORCH_CU121, "version": "2.9.0+cpu", "cuda": None, "cudnn": None, "arch_list": []}
ELSEWHERE_KERNEL = "gpuenv-conda-vision-0badf00d"


def record(fingerprint: str, name: str) -> dict[str, Any]:
    """metadata.gpuenv as the other machine's server wrote it."""
    return {
        "environment_id": ELSEWHERE_KERNEL.removeprefix("gpuenv-"),
        "name": name,
        "kind": "conda",
        "display_name": f"{name} (conda) · PyTorch 2.9 · CUDA 12.1",
        "image": None,
        "image_id": None,
        "python_version": "3.11.9",
        "torch_version": "2.9.0+cu121",
        "cuda_version": "12.1",
        "cudnn_version": "90100",
        "gpus": ["NVIDIA A100-SXM4-40GB"],
        "recorded_at": "2026-01-01T10:00:00Z",
        "fingerprint": fingerprint,
    }


def write_notebook(path: Path, metadata_record: dict[str, Any]) -> None:
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {
                "name": ELSEWHERE_KERNEL,
                "display_name": "vision",
                "language": "python",
            },
            "language_info": {"name": "python"},
            "gpuenv": metadata_record,
        },
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": "import torch; print(torch.__version__)",
            }
        ],
    }
    path.write_text(json.dumps(notebook))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("lab-record")
    # The other machine's environment: the same packages, another name and path.
    elsewhere = make_conda_prefix(base / "machine-a" / "vision", torch=TORCH_CU121)
    fingerprint = environment_fingerprint(
        Environment("x", "vision", "conda", "", "", {"prefix": str(elsewhere)})
    )
    assert fingerprint
    envs_dir = base / "conda-envs"
    make_conda_prefix(envs_dir / f"copy-{TAG}", torch=TORCH_CU121)
    make_conda_prefix(envs_dir / f"cpu-{TAG}", torch=TORCH_CPU)
    server = start_lab(
        base,
        {
            "conda_envs_dirs": [str(envs_dir)],
        },
    )
    write_notebook(server.root_dir / "exact.ipynb", record(fingerprint, "vision"))
    write_notebook(server.root_dir / "similar.ipynb", record("sha256:" + "0" * 64, "other"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def envs(lab: LabServer) -> dict[str, dict[str, Any]]:
    listing = lab.api("gpuenv/api/environments?refresh=true")["environments"]
    return {env["name"].removesuffix(f"-{TAG}"): env for env in listing}


def open_notebook(page: Any, path: str) -> None:
    page.evaluate(
        "(path) => { void window.jupyterapp.commands.execute('docmanager:open', {path}); }",
        path,
    )


def test_exact_match_opens_in_the_environment_with_the_same_packages(
    page: Any, envs: dict[str, Any]
) -> None:
    open_notebook(page, "exact.ipynb")
    wait_for_kernel(page, envs["copy"]["kernel_name"])
    assert page.locator(".jp-Dialog").count() == 0
    open_panel(page)
    section = page.locator(f"{PANEL} .jp-GpuEnv-record")
    section.wait_for()
    assert "Saved with vision (conda) · PyTorch 2.9 · CUDA 12.1" in section.inner_text()
    assert page.locator(f"{PANEL} .jp-GpuEnv-mismatch").count() == 0
    assert page.locator(".jp-GpuEnv-statusMismatch").count() == 0


def test_running_another_build_shows_the_mismatch(
    page: Any, envs: dict[str, Any], artifacts_dir: Path
) -> None:
    cpu = envs["cpu"]
    open_panel(page)
    row(page, cpu).get_by_role("button", name=re.compile("^Use in current notebook")).click()
    wait_for_kernel(page, cpu["kernel_name"])
    expected = "recorded with PyTorch 2.9 · CUDA 12.1, running PyTorch 2.9 · CPU"
    mismatch = page.locator(f"{PANEL} .jp-GpuEnv-mismatch")
    mismatch.wait_for()
    assert mismatch.inner_text().strip() == f"⚠ {expected}"
    status = page.locator(".jp-GpuEnv-statusMismatch")
    status.wait_for()
    assert status.inner_text().strip() == f"⚠ {expected}"
    set_sidebar_width(page, 300)
    assert overflowing(page) == []
    screenshot_panel(page, artifacts_dir / "gpuenv-panel-recorded-mismatch-300.png")
    page.screenshot(path=str(artifacts_dir / "gpuenv-lab-recorded-mismatch.png"))


def test_export_offers_the_recorded_environment(page: Any, tmp_path: Path) -> None:
    open_panel(page)
    button = page.locator(f"{PANEL} .jp-GpuEnv-record").get_by_role(
        "button", name="Export recorded environment.yml"
    )
    with page.expect_download() as download_info:
        button.click()
    target = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(target)
    assert f"name: copy-{TAG}" in target.read_text()


def test_a_weaker_match_asks_first(page: Any, envs: dict[str, Any], lab: LabServer) -> None:
    resolved = lab.api("gpuenv/api/resolve?path=similar.ipynb")
    assert resolved["rule"] == "torch_and_cuda" and resolved["exact"] is False
    open_notebook(page, "similar.ipynb")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "Open in a similar environment?" in dialog.inner_text()
    assert "other (conda) · PyTorch 2.9 · CUDA 12.1" in dialog.inner_text()
    dialog.get_by_role("button", name=f"Use {resolved['display_name']}").click()
    wait_for_kernel(page, resolved["kernel_name"])
