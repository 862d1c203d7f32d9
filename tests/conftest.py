"""Fixtures for every test: a real Docker engine, locally built images, conda prefixes, venvs.

The helpers live in tests/support/ (importable as ``tests.support``) so benchmarks can reuse
them outside pytest.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.provisioning.server_process import ServerProcess, start_server
from tests.support import leftovers
from tests.support.conda_prefix import make_conda_prefix
from tests.support.docker_engine import EngineUnavailable, ensure_docker_engine, running_in_ci
from tests.support.images import BUILD_REPORT, ImagesUnavailable, ensure_image
from tests.support.venvs import make_venv

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the whole run (every other fixture torn down first), nothing of it is left:
    no container, fresh test image, Swarm service or secret, network namespace or extra
    daemon that was not there before. What is found fails the run and is named."""
    client = _answering_docker()
    before = leftovers.snapshot(client)
    yield
    client = client or _answering_docker()
    left = leftovers.snapshot(client).appeared(before)
    if client is not None:
        client.close()
    if left:
        pytest.fail(f"the run left these behind: {left}", pytrace=False)


def _answering_docker() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except docker.errors.DockerException:
        return None
    return client


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
def old_ipykernel_image(docker_client: docker.DockerClient) -> str:
    """Tag of Debian bookworm + python3 3.11 + ipykernel 6.29.5, which knows no CurveZMQ."""
    return _test_image(docker_client, "old-ipykernel")


@pytest.fixture(scope="session")
def torch_cpu_image(docker_client: docker.DockerClient) -> str:
    """Tag of python_kernel_image + the real torch==2.13.0+cpu and numpy."""
    return _test_image(docker_client, "torch-cpu")


@pytest.fixture(scope="session")
def pytorch_official_image(docker_client: docker.DockerClient) -> str:
    """Tag of an image laid out like pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime.

    /opt/conda is a conda prefix with its own python 3.11 (sys.prefix /opt/conda),
    conda-meta records (pytorch, nvidia, defaults, conda-forge channels) and history, and
    a stand-in CUDA 12.1 / cuDNN 9.1 torch 2.9.0 owned by conda (no dist-info); no pip, no
    ipykernel, no system python3; the official image's ENV, WORKDIR /workspace, root.
    ``tests.support.images.tag_as(image, "pytorch/pytorch:...")`` shows it under that name.
    """
    return _test_image(docker_client, "pytorch-official")


@pytest.fixture(scope="session")
def ngc_pytorch_image(docker_client: docker.DockerClient) -> str:
    """Tag of an image laid out like nvcr.io/nvidia/pytorch:24.08-py3.

    The system python3 (/usr/bin/python3) with pip, ipykernel and a stand-in torch
    2.5.0a0+872d972e41.nv24.08 (CUDA 12.6, cuDNN 9.3, pip dist-info) in
    /usr/local/lib/python3.11/dist-packages; NGC's ENV, WORKDIR /workspace, root.
    """
    return _test_image(docker_client, "ngc-pytorch")


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
async def _pytest_asyncio_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """The loop pytest-asyncio runs the current async test on."""
    yield asyncio.get_running_loop()


@pytest.fixture
def jp_asyncio_loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    """The loop pytest-jupyter's servers run on (this replaces its autouse fixture).

    Async tests run on pytest-asyncio's loop, so their server must live there too, or
    ``jp_fetch`` requests are never answered. Sync tests get a fresh loop of their own,
    closed afterwards (pytest-jupyter would reuse, then close, whatever loop is current).
    """
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        yield request.getfixturevalue("_pytest_asyncio_loop")
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run browser tests last (the sort is stable, so the rest keep their order).

    Playwright's sync API keeps an event loop running in the main thread for as long as
    its browser lives; pytest-asyncio cannot start async tests beside it.
    """
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which test images this session built, how long each took, and where the logs are."""
    if BUILD_REPORT:
        terminalreporter.section("gpuenv test images")
        for line in BUILD_REPORT:
            terminalreporter.write_line(line)


@pytest.fixture
def server_processes() -> Iterator[Callable[..., ServerProcess]]:
    """Start ``jupyter server`` processes; every one is stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(*args: Any, **kwargs: Any) -> ServerProcess:
        server = start_server(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
