"""environment.yml read as conda reads it, refused with the line at fault; the CUDA choice;
where ``-n NAME`` goes and what the admin's ``environment_create_dirs`` allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.environments.create.cuda import choose_cuda, driver_too_old
from jupyter_gpuenv.environments.create.errors import CreateRefused
from jupyter_gpuenv.environments.create.spec import (
    InvalidEnvironmentFile,
    parse_environment_yml,
    read_environment_file,
)
from jupyter_gpuenv.environments.create.target import allowed_roots, new_prefix

EXPORTED = """\
name: vision
channels:
  - pytorch
  - conda-forge
dependencies:
  - python=3.11.9=h955ad1f_0
  - pytorch=2.9.0
  - numpy>=1.26,<2
  - pip:
      - --find-links ./wheels
      - --index-url https://mirror.example/simple
      - timm==1.0.9
variables:
  OMP_NUM_THREADS: 4
prefix: /opt/conda/envs/vision
"""


def test_an_exported_file_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "environment.yml"
    path.write_text(EXPORTED)
    spec = read_environment_file(path)
    assert spec.name == "vision" and spec.channels == ["pytorch", "conda-forge"]
    assert spec.conda == ["python=3.11.9=h955ad1f_0", "pytorch=2.9.0", "numpy>=1.26,<2", "pip"]
    assert spec.pip_requirements == ["timm==1.0.9"]
    assert spec.requirements_text().splitlines()[:2] == [
        "--find-links ./wheels",
        "--index-url https://mirror.example/simple",
    ]
    assert spec.variables == {"OMP_NUM_THREADS": "4"}
    assert spec.prefix == "/opt/conda/envs/vision"
    assert spec.base_dir == tmp_path and spec.source == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ndependencies:\n  - a\n  b: [\n", "not valid YAML at line 4"),
        ("name: x\ndependencies: [a]\nchanels: [c]\n", "line 3: unknown key 'chanels'"),
        ("name: a/b\ndependencies: [a]\n", "line 1: `name` must be a folder name"),
        ("name: x\n", "has no `dependencies`"),
        ("name: x\ndependencies:\n  - {conda: [a]}\n", "line 2: dependency {'conda': ['a']}"),
        ("- a\n- b\n", "must be a mapping"),
        ("name: x\nvariables: [A]\ndependencies: [a]\n", "line 2: `variables` must be a mapping"),
    ],
)
def test_what_conda_would_refuse_is_refused_with_its_line(text: str, message: str) -> None:
    with pytest.raises(InvalidEnvironmentFile) as info:
        parse_environment_yml(text)
    assert info.value.status == 400 and message in info.value.message


def test_cuda_choice_order_and_the_driver_warning() -> None:
    def host() -> str:
        return "12.2"

    assert choose_cuda("12.4", "11.8", host).version == "12.4"
    assert choose_cuda(None, "11.8", host).source == "c.GpuEnv.environment_create_cuda"
    assert choose_cuda(None, "", host).version == "12.2"
    assert choose_cuda("none", "", host).version is None
    assert choose_cuda(None, "", lambda: None).version is None
    with pytest.raises(InvalidEnvironmentFile, match="not a version"):
        choose_cuda("cuda12", "", host)
    newer = driver_too_old(choose_cuda("12.4", "", host), "12.2")
    assert newer is not None and "newer than this host's driver" in newer
    assert driver_too_old(choose_cuda("12.1", "", host), "12.2") is None


def test_allowed_folders(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert allowed_roots(GpuEnv(), home) is None
    assert allowed_roots(GpuEnv(hub_user="alice"), home) == [home]
    assert allowed_roots(GpuEnv(environment_create_dirs=["~/envs", "/srv/envs"]), home) == [
        home / "envs",
        Path("/srv/envs"),
    ]
    with pytest.raises(CreateRefused, match="turned off"):
        allowed_roots(GpuEnv(environment_create_dirs=[]), home)


def test_a_name_goes_to_the_first_allowed_writable_folder(tmp_path: Path) -> None:
    shared, own = tmp_path / "shared", tmp_path / "own"
    config = GpuEnv(conda_envs_dirs=[str(shared), str(own)], environment_create_dirs=[str(own)])
    assert new_prefix(config, "x", None) == own / "x"
    with pytest.raises(CreateRefused, match="may only be created under"):
        new_prefix(config, None, str(shared / "y"))
    with pytest.raises(InvalidEnvironmentFile, match="cannot name a new environment"):
        new_prefix(config, "base", None)
