"""Browser fixtures: Debian's chromium driven by Playwright, and a real ``jupyter lab``.

Playwright cannot download its own browsers here, so it drives the system chromium
(installed with apt-get when missing, like the Docker fixture installs docker.io).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.lab_server import LabServer
from tests.lab.panel_page import lab_page
from tests.support.docker_engine import running_in_ci

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _unavailable(reason: str) -> None:
    if running_in_ci():
        pytest.fail(f"CI must run the browser tests, but {reason}")
    pytest.skip(reason)


def _find_chromium() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def _install_chromium() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
    ):
        subprocess.run(argv, env=env, check=False, capture_output=True, timeout=900)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path of Debian's chromium, installed with apt-get when it is missing."""
    path = _find_chromium()
    if path is None:
        _install_chromium()
        path = _find_chromium()
    if path is None:
        _unavailable("chromium is not installed and apt-get could not install it")
    return path


@pytest.fixture(scope="session")
def playwright_browser(chromium_executable: str) -> Iterator[object]:
    """A headless chromium under Playwright's sync API."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """test-artifacts/ at the repository root (git-ignored): screenshots land here."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def jp_asyncio_loop() -> None:
    """These tests start their own ``jupyter lab``, not pytest-jupyter's server.

    pytest-jupyter's autouse loop and cleanup fixtures are async here; Playwright's sync
    API keeps its own event loop running in this thread, so they could not run beside it.
    """
    return None


@pytest.fixture
def jp_server_cleanup() -> None:
    """See ``jp_asyncio_loop``: no pytest-jupyter server to clean up."""
    return None


@pytest.fixture(scope="module")
def page(lab: LabServer, playwright_browser: Any) -> Iterator[Any]:
    """A Lab page on the module's own ``lab`` server, closed after the module."""
    context, page = lab_page(playwright_browser, lab.lab_url())
    try:
        yield page
    finally:
        context.close()
