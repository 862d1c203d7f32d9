"""conda's own configuration, read from files and variables (no conda installed here)."""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.environments.conda_config import (
    CondaSettings,
    default_conda_envs_dirs,
    root_prefix,
)


def make_root(path: Path) -> Path:
    (path / "conda-meta").mkdir(parents=True)
    (path / "envs").mkdir()
    (path / "bin").mkdir()
    return path


def test_defaults_without_any_conda(isolated_conda_home: Path) -> None:
    settings = CondaSettings.load()
    assert settings.root_prefix is None
    assert settings.channels == ["defaults"]
    assert settings.envs_dirs == [isolated_conda_home / ".conda" / "envs"]
    assert settings.listed_prefixes == []


def test_root_prefix_from_conda_exe_and_conda_prefix(tmp_path: Path) -> None:
    root = make_root(tmp_path / "miniforge3")
    assert root_prefix({"CONDA_EXE": str(root / "bin" / "conda")}) == root
    # An activated env: $CONDA_PREFIX is <root>/envs/<name>.
    env = root / "envs" / "vision"
    (env / "conda-meta").mkdir(parents=True)
    assert root_prefix({"CONDA_PREFIX": str(env)}) == root
    # The base env activated: $CONDA_PREFIX is the root itself.
    assert root_prefix({"CONDA_PREFIX": str(root)}) == root
    assert root_prefix({"CONDA_EXE": str(tmp_path / "nowhere" / "bin" / "conda")}) is None


def test_condarc_files_merge_like_conda(isolated_conda_home: Path, tmp_path: Path) -> None:
    root = make_root(tmp_path / "conda")
    (root / ".condarc").write_text(
        "channels:\n  - defaults\nenvs_dirs:\n  - /shared/envs\n", encoding="utf-8"
    )
    user_dir = isolated_conda_home / ".config" / "conda"
    user_dir.mkdir(parents=True)
    (user_dir / "condarc").write_text("channels: [pytorch, conda-forge]\n", encoding="utf-8")
    (isolated_conda_home / ".condarc").write_text(
        "envs_dirs:\n  - ~/my-envs\nchannel_alias: https://mirror.example/conda\n",
        encoding="utf-8",
    )
    explicit = tmp_path / "explicit.yml"
    explicit.write_text("envs_dirs: [/from/condarc/var]\n", encoding="utf-8")
    environ = {
        "HOME": str(isolated_conda_home),
        "CONDA_EXE": str(root / "bin" / "conda"),
        "CONDARC": str(explicit),
        "CONDA_ENVS_PATH": os.pathsep.join(["/from/env/a", "/from/env/b"]),
    }
    settings = CondaSettings.load(environ)
    # Higher-precedence files' list items come first, lower ones keep their order after.
    assert settings.channels == ["pytorch", "conda-forge", "defaults"]
    assert settings.envs_dirs == [
        Path("/from/env/a"),
        Path("/from/env/b"),
        Path("/from/condarc/var"),
        isolated_conda_home / "my-envs",
        Path("/shared/envs"),
        root / "envs",
        isolated_conda_home / ".conda" / "envs",
    ]
    assert settings.root_prefix == root
    assert settings.channel_alias == "https://mirror.example/conda"
    assert root / ".condarc" in settings.condarc_files


def test_environments_txt_lists_prefixes(isolated_conda_home: Path, tmp_path: Path) -> None:
    listed = tmp_path / "somewhere" / "proj-env"
    (isolated_conda_home / ".conda").mkdir()
    (isolated_conda_home / ".conda" / "environments.txt").write_text(
        f"{listed}\n\n{listed}\n/another/env\n", encoding="utf-8"
    )
    assert CondaSettings.load().listed_prefixes == [listed, Path("/another/env")]


def test_gpuenv_default_conda_envs_dirs_are_condas_existing_ones(
    isolated_conda_home: Path, tmp_path: Path, monkeypatch
) -> None:
    root = make_root(tmp_path / "anaconda3")
    monkeypatch.setenv("CONDA_EXE", str(root / "bin" / "conda"))
    assert GpuEnv().conda_envs_dirs is None  # None: conda's own, found at each scan
    assert default_conda_envs_dirs() == [str(root / "envs")]
    (isolated_conda_home / ".conda" / "envs").mkdir(parents=True)
    assert default_conda_envs_dirs() == [
        str(root / "envs"),
        str(isolated_conda_home / ".conda" / "envs"),
    ]
