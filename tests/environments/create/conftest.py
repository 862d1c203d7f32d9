"""Creating environments offline: a local conda channel of real packages made by the test
session (tests/support/conda_channel.py), a wheelhouse for the pip sections, and a user
whose conda config names only that channel."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_gpuenv.config import GpuEnv
from tests.support.conda_channel import (
    ChannelUnavailable,
    build_channel,
    demo_packages,
    ensure_wheelhouse,
)
from tests.support.docker_engine import running_in_ci
from tests.support.stalled_index import StalledIndex

CONDA_CLIS = ("conda", "mamba", "micromamba")


def _unavailable(reason: str) -> None:
    if running_in_ci():
        pytest.fail(f"CI must run the create tests, but the channel cannot be made: {reason}")
    pytest.skip(f"the test channel cannot be made on this machine: {reason}")


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    try:
        return ensure_wheelhouse()
    except ChannelUnavailable as exc:
        _unavailable(str(exc))
        raise


@pytest.fixture(scope="session")
def demo_channel(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """The channel's folder (its URL is ``.as_uri()``), indexed by rattler."""
    try:
        packages = demo_packages(wheelhouse)
    except ChannelUnavailable as exc:
        _unavailable(str(exc))
        raise
    return build_channel(tmp_path_factory.mktemp("channel"), packages)


@dataclass
class CreateSetup:
    """One user: a HOME whose .condarc names the test channel, an envs folder, a config."""

    root: Path
    home: Path
    envs: Path
    channel: Path
    wheelhouse: Path
    traits: dict[str, Any] = field(default_factory=dict)

    @property
    def channel_url(self) -> str:
        return self.channel.as_uri()

    def config(self, **traits: Any) -> GpuEnv:
        return GpuEnv(**{**self.traits, **traits})

    def environment_yml(
        self,
        dependencies: list[str],
        name: str | None = "demo",
        pip: list[str] | None = None,
        variables: dict[str, str] | None = None,
        file: str = "environment.yml",
    ) -> Path:
        """An environment.yml in the setup's folder, naming the test channel."""
        data: dict[str, Any] = {}
        if name:
            data["name"] = name
        data["channels"] = [self.channel_url]
        data["dependencies"] = list(dependencies)
        if pip is not None:
            data["dependencies"].append({"pip": pip})
        if variables:
            data["variables"] = variables
        path = self.root / file
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def pip_offline(self) -> list[str]:
        """The pip-section lines that make pip read only the wheelhouse."""
        return ["--no-index", f"--find-links {self.wheelhouse}"]

    def config_file(self, **traits: Any) -> Path:
        path = self.root / "jupyter_server_config.py"
        lines = [f"c.GpuEnv.{k} = {v!r}" for k, v in {**self.traits, **traits}.items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def cli_environ(self, **extra: str) -> dict[str, str]:
        """The CLI's environment: this HOME, no conda variables, no conda CLI on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "MAMBA"))}
        path = [p for p in env.get("PATH", "").split(os.pathsep) if not _has_conda_cli(p)]
        env.update(
            HOME=str(self.home),
            PATH=os.pathsep.join(path),
            JUPYTER_DATA_DIR=str(self.root / "data"),
            JUPYTER_CONFIG_DIR=str(self.root / "jupyter-config"),
            JUPYTER_RUNTIME_DIR=str(self.root / "runtime"),
            JUPYTER_NO_CONFIG="1",
            JUPYTER_PLATFORM_DIRS="0",
        )
        env.update(extra)
        return env

    def leftovers(self) -> list[str]:
        """Everything in the envs folder (hidden staging folders included)."""
        return sorted(p.name for p in self.envs.iterdir()) if self.envs.exists() else []


def _has_conda_cli(folder: str) -> bool:
    return any(os.path.exists(os.path.join(folder, name)) for name in CONDA_CLIS)


@pytest.fixture
def create_setup(
    tmp_path: Path,
    isolated_conda_home: Path,
    demo_channel: Path,
    wheelhouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> CreateSetup:
    envs = tmp_path / "envs"
    envs.mkdir()
    (isolated_conda_home / ".condarc").write_text(
        yaml.safe_dump({"channels": [demo_channel.as_uri()]}), encoding="utf-8"
    )
    # No conda CLI of this machine may take part: these tests are about the rattler path.
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if not _has_conda_cli(p)]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    traits = {
        "conda_envs_dirs": [str(envs)],
        "venv_dirs": [],
        "docker_label_discovery": False,
        "docker_discover_pytorch_images": False,
        "environment_create_engine": "rattler",
    }
    return CreateSetup(tmp_path, isolated_conda_home, envs, demo_channel, wheelhouse, traits)


@pytest.fixture
def variant() -> Callable[[Path, str], str]:
    """``variant(prefix, package)``: which build of a demo package the prefix got."""

    def read(prefix: Path, package: str = "gpuenv-demo") -> str:
        return (prefix / "share" / package / "variant").read_text().strip()

    return read


@pytest.fixture
def stalled_index() -> Iterator[StalledIndex]:
    """A package index that never answers (tests/support/stalled_index.py)."""
    index = StalledIndex()
    yield index
    index.close()
