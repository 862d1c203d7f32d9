"""A kernel started although the doctor judged its environment incompatible with the host
(``c.GpuEnv.block_incompatible = False``) says so in the Lab: a notification and the
status bar, fed by the kernel's ``start_warning`` in ``GET /gpuenv/api/kernels``, and the
warning above the first cell's output.

The ``jupyter lab`` under test reads a fake NVML (at the library boundary): driver
470.82.01 (CUDA 11.4), too old for the conda env's CUDA 12.1 PyTorch build. The kernel is
a real local ipykernel of a real conda prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import UI_MS, open_panel, row, wait_for_kernel
from tests.support.conda_prefix import make_conda_prefix
from tests.support.fake_nvml_module import fake_nvml_env
from tests.support.fake_torch import TORCH_CU121

pytestmark = [pytest.mark.browser]

DRIVER_FIX = "upgrade the driver to ≥ 530.30.02"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("lab-incompatible")
    envs_dir = base / "conda-envs"
    make_conda_prefix(envs_dir / "oldcuda", torch=TORCH_CU121)
    nvml = fake_nvml_env(
        base / "fake-nvml",
        driver_version="470.82.01",
        cuda_driver_version=11040,
        gpus=[{"name": "NVIDIA A10", "uuid": "GPU-0000-fake-a10-lab", "cc": [8, 6]}],
    )
    server = start_lab(
        base,
        {
            "conda_envs_dirs": [str(envs_dir)],
            "block_incompatible": False,
        },
        extra_env=nvml,
    )
    try:
        yield server
    finally:
        server.stop()


def test_incompatible_kernel_is_flagged_in_the_lab(page: Any, lab: LabServer) -> None:
    (env,) = lab.api("gpuenv/api/environments")["environments"]
    assert env["compatibility"]["verdict"] == "error", env["compatibility"]
    open_panel(page)
    row(page, env).get_by_role("button", name=re.compile("^New notebook")).click()
    wait_for_kernel(page, env["kernel_name"])

    (kernel,) = lab.api("gpuenv/api/kernels")["kernels"]
    warned = kernel["start_warning"]
    assert warned.startswith("oldcuda (conda)") and "will not work on this host" in warned
    assert DRIVER_FIX in warned
    notice = page.get_by_text(
        f"Kernel {kernel['id'][:8]} started although oldcuda will not work on this host."
    )
    notice.first.wait_for(timeout=UI_MS)
    page.get_by_role("button", name="Details").first.click()
    dialog = page.locator(".jp-Dialog-content")
    dialog.wait_for(timeout=UI_MS)
    assert warned in dialog.inner_text()
    dialog.get_by_role("button", name="Ok").click()
    warning = page.locator(".jp-GpuEnv-statusWarning")
    warning.wait_for(timeout=UI_MS)
    assert "incompatible with this host" in warning.inner_text()

    page.click(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content")
    page.keyboard.type("print('first cell')")
    page.keyboard.press("Shift+Enter")
    cell = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-OutputArea"
    page.wait_for_function(
        "(s) => [...document.querySelectorAll(s)].some(a => a.innerText.includes('first cell'))",
        arg=cell,
        timeout=UI_MS,
    )
    text = page.locator(cell).first.inner_text()
    assert text.startswith("Warning from jupyter-gpuenv: oldcuda (conda)"), text
    assert DRIVER_FIX in text and text.rstrip().endswith("first cell")
