"""The probe runs inside real prefixes with their own python; failures become problems."""

from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from jupyter_gpuenv.environments import prefix_reader
from jupyter_gpuenv.environments.conda import site_packages
from jupyter_gpuenv.environments.probe import probe_prefix, probe_source
from jupyter_gpuenv.kernel.probe_script import parse_output

from .conftest import TORCH_CU121


def probe(prefix: Path, timeout: float = 60.0) -> dict:
    return probe_prefix(str(prefix / "bin" / "python"), str(prefix), timeout)


def test_cuda_build_of_torch(tmp_path: Path, conda_prefix_factory) -> None:
    prefix = conda_prefix_factory(tmp_path / "vision", torch=TORCH_CU121)
    result = probe(prefix)
    assert result.torch_version == "2.9.0+cu121"
    assert result.cuda_version == "12.1"
    assert result.cudnn_version == "9.1.0"
    assert result.torch_arch_list == TORCH_CU121["arch_list"]
    assert result.ipykernel is True
    assert result.python_executable == str(prefix / "bin" / "python")
    assert result.problems == []
    assert result.transient is False


def test_cpu_build_and_no_torch(tmp_path: Path, conda_prefix_factory, venv_factory) -> None:
    cpu = probe(conda_prefix_factory(tmp_path / "cpu", torch={"version": "2.9.0+cpu"}))
    assert (cpu.torch_version, cpu.cuda_version, cpu.cudnn_version) == (
        "2.9.0+cpu",
        None,
        None,
    )
    assert cpu.torch_arch_list == []
    plain = probe(venv_factory(tmp_path / "plain"))
    assert plain.torch_version is None and plain.cuda_version is None
    assert plain.python_version.count(".") == 2
    bare = probe(venv_factory(tmp_path / "bare", ipykernel=False))
    assert bare.ipykernel is False


def test_a_failing_torch_import_still_reports_versions(
    tmp_path: Path, conda_prefix_factory
) -> None:
    broken = dict(TORCH_CU121, import_error="libcudnn.so.9: cannot open shared object file")
    result = probe(conda_prefix_factory(tmp_path / "broken", torch=broken))
    assert result.torch_version == "2.9.0+cu121"
    assert result.cuda_version == "12.1"
    assert result.cudnn_version is None
    (problem,) = result.problems
    assert problem.startswith("import torch failed (ImportError: libcudnn.so.9")


def test_a_hanging_torch_import_times_out_with_versions_kept(
    tmp_path: Path, conda_prefix_factory
) -> None:
    prefix = conda_prefix_factory(tmp_path / "hang", torch=TORCH_CU121)
    (site_packages(prefix) / "torch" / "__init__.py").write_text(
        "import time\ntime.sleep(60)\n", encoding="utf-8"
    )
    result = probe(prefix, timeout=3)
    assert result.torch_version == "2.9.0+cu121"
    assert result.transient is True
    assert any("import torch did not finish within 3 s" in p for p in result.problems)


def fake_python(path: Path, script: str) -> Path:
    (path / "bin").mkdir(parents=True)
    python = path / "bin" / "python"
    python.write_text("#!/bin/sh\n" + script + "\n", encoding="utf-8")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return path


def test_an_interpreter_that_crashes_or_hangs(tmp_path: Path) -> None:
    crash = probe(fake_python(tmp_path / "crash", "echo 'Segmentation fault' >&2; exit 139"))
    (problem,) = crash.problems
    assert "exit 139" in problem and "Segmentation fault" in problem
    assert crash.transient is False
    hang = probe(fake_python(tmp_path / "hang", "sleep 60"), timeout=2)
    assert hang.problems == ["the probe did not finish within 2 s (c.GpuEnv.probe_timeout)"]
    assert hang.transient is True


def test_corrupt_conda_meta_json_is_a_problem(tmp_path: Path, conda_prefix_factory) -> None:
    prefix = conda_prefix_factory(tmp_path / "corrupt")
    (prefix / "conda-meta" / "zlib-1.3.1-h4ab18f5_1.json").write_text('{"name": "zl', "utf-8")
    result = probe(prefix)
    assert result.python_version
    (problem,) = result.problems
    assert problem.startswith("conda-meta/zlib-1.3.1-h4ab18f5_1.json is corrupt")


def test_probe_ignores_pythonpath_of_the_server(tmp_path: Path, venv_factory, monkeypatch) -> None:
    shadow = tmp_path / "shadow"
    (shadow / "torch").mkdir(parents=True)
    (shadow / "torch" / "__init__.py").write_text("", encoding="utf-8")
    (shadow / "torch" / "version.py").write_text("__version__ = 'shadowed'\n", "utf-8")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    result = probe(venv_factory(tmp_path / "clean"))
    assert result.torch_version is None


def python38() -> str | None:
    """A working Python 3.8 (pyenv's, or one on PATH that is not a pyenv shim)."""
    candidates = glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))
    candidates += [p for p in [shutil.which("python3.8")] if p]
    for candidate in candidates:
        done = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if done.returncode == 0:
            return candidate
    return None


PYTHON38 = python38()  # looked up once, before the tests move HOME


@pytest.mark.skipif(PYTHON38 is None, reason="no Python 3.8 interpreter on this machine")
def test_in_env_scripts_run_on_python_3_8(tmp_path: Path, conda_prefix_factory) -> None:
    """Environments run old Pythons: the probe and the prefix reader must work on 3.8."""
    interpreter = str(PYTHON38)
    done = subprocess.run(
        [interpreter, "-c", probe_source()], capture_output=True, text=True, check=True
    )
    facts = parse_output(done.stdout)
    assert facts["python_version"].startswith("3.8.")
    prefix = conda_prefix_factory(tmp_path / "env", pip_packages=[("torchinfo", "1.8.0")])
    done = subprocess.run(
        [interpreter, "-c", prefix_reader.source(), str(prefix)],
        capture_output=True,
        text=True,
        check=True,
    )
    described = prefix_reader.parse_output(done.stdout)
    assert described == json.loads(json.dumps(prefix_reader.read_conda_prefix(str(prefix))))
