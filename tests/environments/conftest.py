"""Catalog tests run against real prefixes in tmp folders, never the machine's own conda setup."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.environments.catalog import Catalog

CONDA_VARS = (
    "CONDA_EXE",
    "CONDA_PREFIX",
    "CONDA_ROOT",
    "CONDA_ENVS_PATH",
    "CONDA_ENVS_DIRS",
    "CONDARC",
    "MAMBA_ROOT_PREFIX",
    "XDG_CONFIG_HOME",
)

TORCH_CU121 = {
    "version": "2.9.0+cu121",
    "cuda": "12.1",
    "cudnn": 90100,
    "arch_list": ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "compute_90"],
}


@pytest.fixture(autouse=True)
def isolated_conda_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of our own and no conda variables: conda's config comes only from the test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in CONDA_VARS:
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def make_catalog(tmp_path: Path) -> Iterator[Callable[..., Catalog]]:
    """``make_catalog(cache_path=..., **GpuEnv traits)``; local sources only unless given."""
    made: list[Catalog] = []

    def factory(cache_path: Path | None = None, **traits: Any) -> Catalog:
        traits.setdefault("docker_label_discovery", False)
        traits.setdefault("docker_discover_pytorch_images", False)
        traits.setdefault("conda_envs_dirs", [])
        traits.setdefault("venv_dirs", [])
        config = GpuEnv(**traits)
        catalog = Catalog(config, cache_path=cache_path or tmp_path / "cache" / "catalog.json")
        made.append(catalog)
        return catalog

    yield factory
    for catalog in made:
        catalog.stop()
