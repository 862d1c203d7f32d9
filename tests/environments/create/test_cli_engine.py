"""The conda / mamba / micromamba path: which CLI is found, and the command each is given.

No conda-compatible CLI can be installed offline here, so this one test file uses a
stand-in: an executable script named conda, mamba or micromamba that records the argv and
CONDA_OVERRIDE_CUDA it was run with, prints conda's progress lines and makes the prefix
(or fails as a solver does). It checks the command's shape and our handling of the
output only; what a real CLI does with the command is conda's business. Every other
create test runs the real py-rattler engine.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from jupyter_gpuenv.environments.create.cli_engine import CondaCli, create_command, find_cli
from jupyter_gpuenv.environments.create.create import CreateRequest, plan_create, run_create
from jupyter_gpuenv.environments.create.errors import SolveConflict
from jupyter_gpuenv.environments.create.job import CreateJob
from jupyter_gpuenv.environments.create.spec import parse_environment_yml

STAND_IN = """#!{python}
# Stand-in for a conda CLI (tests/environments/create/test_cli_engine.py): records its argv.
import json, os, sys
argv = sys.argv
record = {{"argv": argv, "cuda": os.environ.get("CONDA_OVERRIDE_CUDA"), "cwd": os.getcwd()}}
prefix = argv[argv.index("--prefix") + 1]
record["file"] = open(argv[argv.index("--file") + 1]).read()
with open({log!r}, "a") as log:
    log.write(json.dumps(record) + "\\n")
for line in ["Channels:", "Collecting package metadata (repodata.json): done",
             "Solving environment: done", "Downloading and Extracting Packages:",
             "Preparing transaction: done", "Executing transaction: done",
             "Installing pip dependencies: done"]:
    print(line, flush=True)
    if os.environ.get("STAND_IN_FAIL") and line.startswith("Solving"):
        os.makedirs(os.path.join(prefix, "conda-meta"))  # a CLI may leave a partial prefix
        print("LibMambaUnsatisfiableError: Encountered problems while solving:")
        print("  - package gpuenv-app-1.0-0 requires gpuenv-lib <2, but none can be installed")
        sys.exit(1)
os.makedirs(os.path.join(prefix, "conda-meta"))
"""

YML = "name: demo\nchannels: [conda-forge]\ndependencies:\n  - gpuenv-demo\n"


def stand_in(folder: Path, name: str, log: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(STAND_IN.format(python=sys.executable, log=str(log)), encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def envs(tmp_path: Path) -> Path:
    folder = tmp_path / "envs"
    folder.mkdir()
    return folder


def config_for(envs: Path, **traits):
    from jupyter_gpuenv.config import GpuEnv

    return GpuEnv(conda_envs_dirs=[str(envs)], venv_dirs=[], **traits)


def test_the_command_of_each_cli() -> None:
    file, prefix = Path("/w/environment.yml"), Path("/e/demo")
    assert create_command(CondaCli("conda", "/c/bin/conda"), file, prefix) == [
        "/c/bin/conda", "env", "create", "--file", "/w/environment.yml", "--prefix", "/e/demo",
    ]  # fmt: skip
    assert create_command(CondaCli("mamba", "/c/bin/mamba"), file, prefix) == [
        "/c/bin/mamba", "env", "create", "--yes", "--file", "/w/environment.yml",
        "--prefix", "/e/demo",
    ]  # fmt: skip
    assert create_command(CondaCli("micromamba", "/m/micromamba"), file, prefix) == [
        "/m/micromamba", "create", "--yes", "--file", "/w/environment.yml", "--prefix", "/e/demo",
    ]  # fmt: skip


def test_where_the_cli_is_found(tmp_path: Path, isolated_conda_home: Path) -> None:
    log = tmp_path / "log"
    on_path = stand_in(tmp_path / "path-bin", "mamba", log)
    exe = stand_in(tmp_path / "miniforge" / "condabin", "conda", log)
    micro = stand_in(tmp_path / "mm" / "bin", "micromamba", log)
    root = tmp_path / "root"
    (root / "conda-meta").mkdir(parents=True)
    in_root = stand_in(root / "bin", "conda", log)
    path = str(on_path.parent)
    assert find_cli(
        "auto", {"PATH": path, "CONDA_EXE": str(exe), "HOME": str(isolated_conda_home)}
    ) == CondaCli("conda", str(exe))
    assert find_cli(
        "auto", {"PATH": path, "MAMBA_EXE": str(micro), "HOME": str(isolated_conda_home)}
    ) == CondaCli("micromamba", str(micro))
    assert find_cli("auto", {"PATH": path, "HOME": str(isolated_conda_home)}) == CondaCli(
        "mamba", str(on_path)
    )
    assert find_cli(
        "conda", {"PATH": path, "CONDA_ROOT": str(root), "HOME": str(isolated_conda_home)}
    ) == CondaCli("conda", str(in_root))
    assert find_cli("auto", {"PATH": "", "HOME": str(isolated_conda_home)}) is None  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "head"),
    [
        ("conda", ["env", "create", "--file"]),
        ("mamba", ["env", "create", "--yes", "--file"]),
        ("micromamba", ["create", "--yes", "--file"]),
    ],
)
def test_a_create_runs_the_cli_found_on_path(
    tmp_path: Path, envs: Path, monkeypatch: pytest.MonkeyPatch, kind: str, head: list[str]
) -> None:
    log = tmp_path / "argv.jsonl"
    cli = stand_in(tmp_path / "bin", kind, log)
    monkeypatch.setenv("PATH", f"{cli.parent}{os.pathsep}{os.environ['PATH']}")
    for var in ("CONDA_EXE", "MAMBA_EXE"):
        monkeypatch.delenv(var, raising=False)
    request = CreateRequest(parse_environment_yml(YML), cuda="12.4")
    plan = plan_create(config_for(envs), request, lambda: None)
    assert plan.engine == kind
    job = CreateJob("create")
    run_create(plan, job)
    (record,) = records(log)
    assert record["argv"][0] == str(cli)
    assert record["argv"][1:] == [*head, record["argv"][-3], "--prefix", str(envs / "demo")]
    assert record["file"] == YML and record["cuda"] == "12.4"
    assert [s.key for s in job.steps] == ["solve", "download", "link", "pip"]
    assert (envs / "demo" / "conda-meta").is_dir()


def test_no_cuda_is_an_empty_override_and_a_conflict_leaves_nothing(
    tmp_path: Path, envs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "argv.jsonl"
    cli = stand_in(tmp_path / "bin", "conda", log)
    monkeypatch.setenv("CONDA_EXE", str(cli))
    monkeypatch.setenv("STAND_IN_FAIL", "1")
    plan = plan_create(
        config_for(envs, environment_create_cuda="none"),
        CreateRequest(parse_environment_yml(YML)),
        lambda: "12.8",
    )
    with pytest.raises(SolveConflict) as info:
        run_create(plan, CreateJob("create"))
    assert "gpuenv-lib <2" in info.value.message and info.value.message.startswith("conda ")
    assert records(log)[0]["cuda"] == ""
    assert list(envs.iterdir()) == []
