"""Discovery only looks at the file system: which folders are conda envs, which are venvs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from traitlets.config import Config

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.environments import conda, venv
from jupyter_gpuenv.environments.conda_config import CondaSettings
from jupyter_gpuenv.environments.sources import Sources


def test_conda_prefixes_from_dirs_environments_txt_and_base(
    tmp_path: Path, isolated_conda_home: Path, conda_prefix_factory, monkeypatch
) -> None:
    root = conda_prefix_factory(tmp_path / "miniforge3", name="base")
    (root / "bin" / "conda").write_text("#!/bin/sh\n", encoding="utf-8")
    in_root = conda_prefix_factory(root / "envs" / "vision")
    in_dir = conda_prefix_factory(tmp_path / "team-envs" / "nlp")
    (tmp_path / "team-envs" / "not-an-env").mkdir()
    elsewhere = conda_prefix_factory(tmp_path / "projects" / "demo" / "env")
    (isolated_conda_home / ".conda").mkdir()
    (isolated_conda_home / ".conda" / "environments.txt").write_text(
        f"{root}\n{elsewhere}\n{tmp_path / 'deleted-env'}\n", encoding="utf-8"
    )
    monkeypatch.setenv("CONDA_EXE", str(root / "bin" / "conda"))
    settings = CondaSettings.load()
    dirs = [str(root / "envs"), str(tmp_path / "team-envs"), str(tmp_path / "missing")]
    prefixes = conda.conda_prefixes(dirs, settings)
    assert prefixes == [root, in_root, in_dir, elsewhere]
    names = [conda.conda_candidate(p, settings).name for p in prefixes]
    assert names == ["base", "vision", "nlp", "env"]


def test_a_prefix_with_conda_meta_is_conda_even_with_pyvenv_cfg(
    tmp_path: Path, conda_prefix_factory, venv_factory
) -> None:
    both = conda_prefix_factory(tmp_path / "envs" / "both")
    (both / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    plain = venv_factory(tmp_path / "envs" / "plain-venv")
    assert venv.venv_prefixes([tmp_path / "envs"]) == [plain]
    assert conda.conda_prefixes([tmp_path / "envs"], CondaSettings()) == [both]


def test_venv_dirs_entries_and_names(tmp_path: Path, venv_factory) -> None:
    project_venv = venv_factory(tmp_path / "myproject" / ".venv")
    pooled = venv_factory(tmp_path / "venvs" / "torch-cpu")
    (tmp_path / "venvs" / "junk").mkdir()
    found = venv.venv_prefixes([tmp_path / "venvs", tmp_path / "myproject" / ".venv"])
    assert found == [pooled, project_venv]
    assert [venv.venv_candidate(p).name for p in found] == ["torch-cpu", "myproject"]
    candidate = venv.venv_candidate(pooled)
    assert candidate.python == str(pooled / "bin" / "python")
    assert candidate.location == {"prefix": str(pooled)}
    assert not candidate.problems


def test_a_venv_whose_base_python_is_gone_says_so(tmp_path: Path) -> None:
    prefix = tmp_path / "venvs" / "stale"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text("home = /gone\nversion = 3.9.1\n", encoding="utf-8")
    (prefix / "bin" / "python").symlink_to("/gone/bin/python3.9")
    candidate = venv.venv_candidate(prefix)
    assert candidate.python is None
    assert "/gone/bin/python3.9" in candidate.problems[0]


def test_conda_prefix_without_python(tmp_path: Path, conda_prefix_factory) -> None:
    prefix = conda_prefix_factory(tmp_path / "envs" / "r-only", python=False)
    candidate = conda.conda_candidate(prefix, CondaSettings())
    assert candidate.python is None
    assert "bin/python is missing" in candidate.problems[0]


def bump(path: Path) -> None:
    """Make sure the next change gets a later mtime than the one already recorded."""
    time.sleep(0.01)
    stamp = time.time_ns()
    os.utime(path, ns=(stamp, stamp))


def test_conda_identity_changes_with_conda_and_pip(tmp_path: Path, conda_prefix_factory) -> None:
    prefix = conda_prefix_factory(tmp_path / "envs" / "vision")
    first = conda.conda_identity(prefix)
    assert conda.conda_identity(prefix) == first
    # pip adds a dist-info folder to site-packages
    site = conda.site_packages(prefix)
    major_minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert site == prefix / "lib" / f"python{major_minor}" / "site-packages"
    (site / "torchinfo-1.8.0.dist-info").mkdir()
    bump(site)
    second = conda.conda_identity(prefix)
    assert second != first
    # conda appends to the history
    with open(prefix / "conda-meta" / "history", "a", encoding="utf-8") as handle:
        handle.write("==> 2026-02-01 10:00:00 <==\n")
    bump(prefix / "conda-meta" / "history")
    assert conda.conda_identity(prefix) != second


def test_venv_identity_changes_with_pip(tmp_path: Path, venv_factory) -> None:
    prefix = venv_factory(tmp_path / "v")
    first = venv.venv_identity(prefix)
    site = venv.venv_site_packages(prefix)
    (site / "requests-2.32.0.dist-info").mkdir()
    bump(site)
    assert venv.venv_identity(prefix) != first


def test_pixi_project_environments_are_listed_like_conda_prefixes(
    tmp_path: Path, isolated_conda_home: Path, conda_prefix_factory
) -> None:
    """``pixi_project_dirs``: a project itself or a folder of projects; each installed
    environment (.pixi/envs/<env>) is a conda prefix named after its project."""
    work = tmp_path / "work"
    vision = work / "vision"
    (vision / "pixi.toml").parent.mkdir(parents=True)
    (vision / "pixi.toml").write_text('[workspace]\nname = "vision"\n', encoding="utf-8")
    default = conda_prefix_factory(vision / ".pixi" / "envs" / "default")
    cuda = conda_prefix_factory(vision / ".pixi" / "envs" / "cuda")
    lone = tmp_path / "lone"
    (lone / ".pixi" / "envs").mkdir(parents=True)
    (lone / "pyproject.toml").write_text("[tool.pixi.workspace]\n", encoding="utf-8")
    lone_env = conda_prefix_factory(lone / ".pixi" / "envs" / "default")
    # Not projects: no manifest, or nothing installed.
    stray = conda_prefix_factory(work / "stray" / ".pixi" / "envs" / "default")
    (work / "fresh").mkdir()
    (work / "fresh" / "pixi.toml").write_text("", encoding="utf-8")
    assert conda.pixi_prefixes([work, lone, tmp_path / "missing"]) == [
        (vision, cuda),
        (vision, default),
        (lone, lone_env),
    ]

    c = Config()
    c.GpuEnv.conda_envs_dirs = []
    c.GpuEnv.pixi_project_dirs = [str(work), str(lone)]
    found = {cand.name: cand for cand in Sources(GpuEnv(config=c)).local_candidates()}
    assert set(found) == {"vision", "vision-cuda", "lone"}
    assert found["vision"].kind == "conda" and found["vision"].location == {
        "prefix": str(default),
        "pixi_project": str(vision),
    }
    assert found["vision-cuda"].python == str(cuda / "bin" / "python")
    assert str(stray) not in {cand.discriminator for cand in found.values()}
