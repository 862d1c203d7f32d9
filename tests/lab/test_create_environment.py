"""Creating, removing and restoring environments from the Lab, in a real browser.

The panel's "New environment" form gets a bad file pasted in (the server's message shows),
then an environment.yml uploaded (the test session's local conda channel, the wheelhouse
for ipykernel); the bar follows the create job until done, and the new environment
appears in the list and as a kernel in the launcher. "Remove" asks first, then the
environment is gone. A create whose pip waits forever is cancelled and leaves nothing.
A notebook whose recorded environment is missing offers "Restore
environment" in the notice; it is rebuilt from the record's spec and the notebook runs in
it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.lab_server import LabServer, start_lab
from tests.lab.panel_page import PANEL, open_panel, screenshot_panel, wait_for_kernel
from tests.support.conda_channel import (
    ChannelUnavailable,
    build_channel,
    demo_packages,
    ensure_wheelhouse,
)
from tests.support.docker_engine import running_in_ci
from tests.support.stalled_index import StalledIndex

pytestmark = [pytest.mark.browser]

CREATE_MS = 300_000


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the local channel's folder, the wheelhouse); built in a thread of its own, since
    Playwright's sync API keeps an event loop running in this one."""
    folder = tmp_path_factory.mktemp("lab-channel")

    def make() -> tuple[Path, Path]:
        wheelhouse = ensure_wheelhouse()
        return build_channel(folder, demo_packages(wheelhouse)), wheelhouse

    try:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(make).result()
    except ChannelUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the create tests, but the channel cannot be made: {exc}")
        pytest.skip(f"the test channel cannot be made on this machine: {exc}")
        raise


@pytest.fixture(scope="module")
def envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-create") / "envs"


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, channel: tuple[Path, Path], envs_dir: Path
) -> Iterator[LabServer]:
    base = envs_dir.parent
    envs_dir.mkdir()
    home = base / "home"
    home.mkdir()
    (home / ".condarc").write_text(yaml.safe_dump({"channels": [channel[0].as_uri()]}))
    server = start_lab(
        base,
        {"conda_envs_dirs": [str(envs_dir)], "environment_create_engine": "rattler"},
        extra_env={"HOME": str(home), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(channel[1])},
    )
    try:
        yield server
    finally:
        server.stop()


def environment_yml(channel: tuple[Path, Path], name: str) -> str:
    data = {
        "name": name,
        "channels": [channel[0].as_uri()],
        "dependencies": ["python", "pip", "gpuenv-demo", {"pip": ["ipykernel"]}],
    }
    return yaml.safe_dump(data, sort_keys=False)


def listed(lab: LabServer) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in lab.api("gpuenv/api/environments")["environments"]}


def test_create_from_pasted_yaml_appears_in_the_list_and_the_launcher(
    page: Any, lab: LabServer, channel: tuple[Path, Path], envs_dir: Path, artifacts_dir: Path
) -> None:
    open_panel(page)
    page.click(f"{PANEL} button:has-text('New environment')")
    form = page.locator("#gpuenv-create-form")
    form.wait_for()

    form.get_by_label("environment.yml", exact=True).fill("name: x\ndependencies:\n  - a\n  b: [\n")
    form.locator("button[type=submit]").click()
    error = form.locator("[role=alert]")
    error.wait_for()
    assert "not valid YAML at line 4" in error.inner_text()

    uploaded = envs_dir.parent / "environment.yml"  # an uploaded file fills the text box
    uploaded.write_text(environment_yml(channel, "fromlab"))
    form.get_by_label("Upload environment.yml").set_input_files(str(uploaded))
    page.wait_for_function(
        "() => document.querySelector('#gpuenv-create-form textarea').value"
        ".includes('name: fromlab')"
    )
    form.get_by_label("CUDA version").fill("12.4")
    form.locator("button[type=submit]").click()
    form.locator("progress.jp-GpuEnv-createBar").wait_for()  # the bar while it runs
    form.locator(".jp-GpuEnv-createJob[data-state=done]").wait_for(timeout=CREATE_MS)
    assert "Created fromlab" in form.locator(".jp-GpuEnv-createJob").inner_text()
    assert "rattler, CUDA 12.4" in form.locator(".jp-GpuEnv-createJob").inner_text()
    assert (envs_dir / "fromlab" / "share" / "gpuenv-demo" / "variant").read_text() == "cuda\n"
    screenshot_panel(page, artifacts_dir / "gpuenv-panel-create-done.png")

    env = listed(lab)["fromlab"]
    page.locator(f'{PANEL} li.jp-GpuEnv-env[data-env-id="{env["id"]}"]').wait_for()
    page.wait_for_function(
        "(name) => !!window.jupyterapp.serviceManager.kernelspecs.specs"
        " && name in window.jupyterapp.serviceManager.kernelspecs.specs.kernelspecs",
        arg=env["kernel_name"],
    )
    page.evaluate("() => { void window.jupyterapp.commands.execute('launcher:create'); }")
    card = page.locator('.jp-LauncherCard[data-category="Notebook"]', has_text="fromlab")
    card.first.wait_for(state="attached")  # a card of the new kernel (its tab may be behind)


def dependencies(exported: str) -> list[Any]:
    """An export's packages (names and versions), whatever the environment is called."""
    data = yaml.safe_load(exported)
    return sorted(data["dependencies"], key=str)


def test_an_export_pasted_in_the_lab_makes_an_equal_environment_whose_kernel_runs(
    page: Any, lab: LabServer, envs_dir: Path
) -> None:
    """``export --no-builds`` of one environment, pasted under another name: the same
    package names and versions, and a notebook's kernel runs in it."""
    source = listed(lab)["fromlab"]
    exported = lab.text(f"gpuenv/api/environments/{source['id']}/export?no_builds=true")
    open_panel(page)
    form = page.locator("#gpuenv-create-form")
    if not form.is_visible():  # still open from the test before, else opened now
        page.click(f"{PANEL} button:has-text('New environment')")
    form.wait_for()
    form.get_by_label("environment.yml", exact=True).fill(exported)
    form.get_by_label("Environment name").fill("copied")
    form.get_by_label("CUDA version").fill("12.4")
    form.locator("button[type=submit]").click()
    done = form.locator(".jp-GpuEnv-createJob[data-state=done]", has_text="Created copied")
    done.wait_for(timeout=CREATE_MS)
    copy = listed(lab)["copied"]
    assert copy["location"]["prefix"] == str(envs_dir / "copied")
    again = lab.text(f"gpuenv/api/environments/{copy['id']}/export?no_builds=true")
    assert dependencies(again) == dependencies(exported)

    page.wait_for_function(
        "(name) => !!window.jupyterapp.serviceManager.kernelspecs.specs"
        " && name in window.jupyterapp.serviceManager.kernelspecs.specs.kernelspecs",
        arg=copy["kernel_name"],
    )
    page.evaluate(
        "(name) => { void window.jupyterapp.commands.execute('notebook:create-new', "
        "{kernelName: name}); }",
        copy["kernel_name"],
    )
    wait_for_kernel(page, copy["kernel_name"])
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content").first.click()
    page.keyboard.type("import sys; print(sys.prefix)")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output", has_text=str(envs_dir / "copied"))
    output.first.wait_for(timeout=CREATE_MS)


def test_cancel_stops_a_create_and_leaves_nothing(
    page: Any, lab: LabServer, channel: tuple[Path, Path], envs_dir: Path
) -> None:
    """A create whose pip waits on an index that never answers: Cancel stops it, the
    form says so, and nothing of it is left in the folder."""
    index = StalledIndex()
    try:
        data = {
            "name": "stalled",
            "channels": [channel[0].as_uri()],
            "dependencies": [
                "python",
                "pip",
                {"pip": [f"--find-links {index.url}", "gpuenv-not-in-any-index"]},
            ],
        }
        open_panel(page)
        form = page.locator("#gpuenv-create-form")
        if not form.is_visible():
            page.click(f"{PANEL} button:has-text('New environment')")
        form.wait_for()
        form.get_by_label("environment.yml", exact=True).fill(yaml.safe_dump(data))
        form.get_by_label("Environment name").fill("")
        form.locator("button[type=submit]").click()
        form.locator(".jp-GpuEnv-createJob", has_text="pip requirements").wait_for(
            timeout=CREATE_MS
        )
        for _ in range(600):  # until pip waits on the index
            if index.taken:
                break
            page.wait_for_timeout(100)
        assert index.taken, "pip never reached the stalled index"
        before = {p.name for p in envs_dir.iterdir()}
        assert any(name.startswith(".") or name == "stalled" for name in before), before
        form.locator("button:has-text('Cancel')").click()
        stopped = form.locator(
            ".jp-GpuEnv-createJob[data-state=failed]",
            has_text="the create was cancelled; nothing was left behind",
        )
        stopped.wait_for(timeout=60_000)
        assert index.closed_by_pip(10)
        assert not [p.name for p in envs_dir.iterdir() if p.name not in ("fromlab", "copied")]
        assert "stalled" not in listed(lab)
        assert form.locator("button[type=submit]").inner_text() == "Create"
        assert form.locator("button:has-text('Cancel')").count() == 0
    finally:
        index.close()


def test_remove_asks_then_the_environment_is_gone(
    page: Any, lab: LabServer, envs_dir: Path
) -> None:
    env = listed(lab)["fromlab"]
    open_panel(page)
    row = page.locator(f'{PANEL} li.jp-GpuEnv-env[data-env-id="{env["id"]}"]')
    row.locator("button:has-text('Remove')").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    dialog.locator("button:has-text('Cancel')").click()
    assert (envs_dir / "fromlab").is_dir()

    row.locator("button:has-text('Remove')").click()
    page.locator(".jp-Dialog button.jp-mod-warn").click()
    row.wait_for(state="detached")
    assert not (envs_dir / "fromlab").exists()
    assert "fromlab" not in listed(lab)


def test_a_missing_recorded_environment_is_restored_from_the_notice(
    page: Any, lab: LabServer, channel: tuple[Path, Path], envs_dir: Path
) -> None:
    record = {  # what the other machine's server wrote on save, spec included
        "environment_id": "conda-restored-0badf00d",
        "name": "restored",
        "kind": "conda",
        "display_name": "restored (conda) · Python 3.11",
        "python_version": "3.11.7",
        "recorded_at": "2026-01-01T10:00:00Z",
        "spec": environment_yml(channel, "restored"),
    }
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "gpuenv-conda-restored-0badf00d", "display_name": "restored"},
            "gpuenv": record,
        },
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": "import sys; print(sys.prefix)",
            }
        ],
    }
    (lab.root_dir / "moved.ipynb").write_text(json.dumps(notebook))
    page.evaluate(
        "() => { void window.jupyterapp.commands.execute('docmanager:open', "
        "{path: 'moved.ipynb'}); }"
    )
    action = page.locator(".jp-toast-button", has_text="Restore environment")
    action.wait_for()
    dialog = page.locator(".jp-Dialog")
    if dialog.count():  # Lab's own kernel chooser, offered beside the notice
        page.keyboard.press("Escape")
        dialog.wait_for(state="detached")
    action.click()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.Toastify__toast'))"
        ".some(t => t.textContent.includes('restored is ready'))",
        timeout=CREATE_MS,
    )
    env = listed(lab)["restored"]
    assert env["location"]["prefix"] == str(envs_dir / "restored")
    wait_for_kernel(page, env["kernel_name"])
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    output = page.locator(".jp-OutputArea-output", has_text=str(envs_dir / "restored"))
    output.wait_for(timeout=CREATE_MS)
