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
