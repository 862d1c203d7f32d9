"""Fixtures for every test: a real Docker engine, locally built images, conda prefixes, venvs.

The helpers live in tests/support/ (importable as ``tests.support``) so benchmarks can reuse
them outside pytest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.support.conda_prefix import make_conda_prefix
from tests.support.docker_engine import EngineUnavailable, ensure_docker_engine, running_in_ci
from tests.support.images import BUILD_REPORT, ImagesUnavailable, ensure_image
from tests.support.venvs import make_venv

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of a running Docker engine (installed and started here when needed).

    Skips only when the engine cannot run on this machine; in CI (``CI=true``) that is a
    failure, because CI must run the Docker tests.
    """
    try:
        client = ensure_docker_engine()
    except EngineUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the Docker tests, but the engine cannot run: {exc}")
        pytest.skip(f"Docker engine cannot run on this machine: {exc}")
    yield client
    client.close()


def _test_image(client: docker.DockerClient, name: str) -> str:
    try:
        return ensure_image(client, name)
    except ImagesUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the Docker tests, but test images cannot be built: {exc}")
        pytest.skip(f"test images cannot be built on this machine: {exc}")


@pytest.fixture(scope="session")
def bare_python_image(docker_client: docker.DockerClient) -> str:
    """Tag of Debian bookworm's python3 without ipykernel or pip (for the kernel layer)."""
    return _test_image(docker_client, "bare-python")


@pytest.fixture(scope="session")
def python_kernel_image(docker_client: docker.DockerClient) -> str:
    """Tag of Debian bookworm + python3 3.11 + ipykernel (and pip); HOME=/tmp."""
    return _test_image(docker_client, "python-kernel")


@pytest.fixture(scope="session")
def torch_cpu_image(docker_client: docker.DockerClient) -> str:
    """Tag of python_kernel_image + the real torch==2.13.0+cpu and numpy."""
    return _test_image(docker_client, "torch-cpu")


@pytest.fixture
def conda_prefix_factory() -> Callable[..., Path]:
    """``factory(path, name=None, python=True, packages=(), pip_packages=(), history=None,
    activate_scripts=None, deactivate_scripts=None, torch=None) -> Path``.

    Lays out a conda prefix at ``path``; see tests/support/conda_prefix.py.
    """
    return make_conda_prefix


@pytest.fixture
def venv_factory() -> Callable[..., Path]:
    """``factory(path, ipykernel=True, pip_packages=(), torch=None) -> Path``: a real venv."""
    return make_venv


@pytest.fixture
async def jp_asyncio_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """Put pytest-jupyter's servers on pytest-asyncio's loop.

    pytest-asyncio runs async tests on its own loop; pytest-jupyter would start its
    servers on another one, where ``jp_fetch`` requests then never get answered.
    """
    yield asyncio.get_running_loop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which test images this session built, how long each took, and where the logs are."""
    if BUILD_REPORT:
        terminalreporter.section("gpuenv test images")
        for line in BUILD_REPORT:
            terminalreporter.write_line(line)
