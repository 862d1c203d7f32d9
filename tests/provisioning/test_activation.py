"""conda/venv activation: the variables conda's activator sets, and the activate.d scripts
sourced once per prefix state (real bash, real files)."""

from __future__ import annotations

import json
import os
import time

from jupyter_gpuenv.provisioning.local.activation import (
    activate_scripts_delta,
    activated_env,
    conda_activation,
    conda_default_env,
    venv_activation,
)


def test_first_activation_prepends_the_prefix(tmp_path):
    prefix = str(tmp_path / "envs" / "vision")
    env = conda_activation(prefix, {"PATH": "/usr/bin:/bin", "PYTHONHOME": "/x"})
    assert env["PATH"] == f"{prefix}/bin:/usr/bin:/bin"
    assert env["CONDA_SHLVL"] == "1"
    assert env["CONDA_DEFAULT_ENV"] == "vision"
    assert env["CONDA_PROMPT_MODIFIER"] == "(vision) "
    assert "PYTHONHOME" not in env


def test_activation_from_an_active_env_replaces_it_like_conda(tmp_path):
    old = "/opt/conda"
    prefix = str(tmp_path / "envs" / "vision")
    base = {"PATH": f"/usr/local/bin:{old}/bin:/usr/bin", "CONDA_PREFIX": old, "CONDA_SHLVL": "1"}
    env = conda_activation(prefix, base)
    assert env["PATH"] == f"/usr/local/bin:{prefix}/bin:/usr/bin"
    assert env["CONDA_SHLVL"] == "2"
    assert env["CONDA_PREFIX_1"] == old


def test_default_env_name_follows_conda(tmp_path):
    root = tmp_path / "miniconda"
    (root / "condabin").mkdir(parents=True)
    assert conda_default_env(str(root)) == "base"
    assert conda_default_env(str(root / "envs" / "vision")) == "vision"
    assert conda_default_env(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")


def test_venv_activation(tmp_path):
    prefix = str(tmp_path / "venv")
    env = venv_activation(prefix, {"PATH": "/old/venv/bin:/usr/bin", "VIRTUAL_ENV": "/old/venv"})
    assert env["PATH"] == f"{prefix}/bin:/usr/bin"
    assert env["VIRTUAL_ENV"] == prefix


def write_script(prefix, name, text):
    folder = prefix / "etc" / "conda" / "activate.d"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_scripts_run_once_per_prefix_state(tmp_path):
    prefix = tmp_path / "envs" / "cached"
    (prefix / "conda-meta").mkdir(parents=True)
    script = write_script(prefix, "a.sh", 'export GPUENV_A="$CONDA_PREFIX/a"\n')
    start = conda_activation(str(prefix), {"PATH": "/usr/bin"})
    first = activate_scripts_delta(str(prefix), start)
    assert first.set["GPUENV_A"] == f"{prefix}/a"
    assert activate_scripts_delta(str(prefix), start) is first  # cached: bash not run again

    script.write_text('export GPUENV_A="changed"\n')
    later = time.time() + 5
    os.utime(script, (later, later))
    second = activate_scripts_delta(str(prefix), start)
    assert second is not first and second.set["GPUENV_A"] == "changed"


def test_failing_script_does_not_stop_the_others(tmp_path):
    prefix = tmp_path / "envs" / "failing"
    (prefix / "conda-meta").mkdir(parents=True)
    write_script(prefix, "1-broken.sh", "false\nexport GPUENV_B=one\nno-such-command-here\n")
    write_script(prefix, "2-fine.sh", "export GPUENV_C=two\n")
    env = activated_env("conda", str(prefix), {"PATH": "/usr/bin:/bin"})
    assert env["GPUENV_B"] == "one" and env["GPUENV_C"] == "two"


def test_script_that_exits_is_reported_not_fatal(tmp_path):
    prefix = tmp_path / "envs" / "exiting"
    (prefix / "conda-meta").mkdir(parents=True)
    write_script(prefix, "x.sh", "echo leaving >&2\nexit 3\n")
    delta = activate_scripts_delta(str(prefix), {"PATH": "/usr/bin:/bin"})
    assert delta.problem and "leaving" in delta.problem
    assert delta.set == {}


def test_unset_marker_removes_the_variable_like_conda(tmp_path):
    """``conda env config vars unset`` leaves ``***unset***`` in conda-meta/state: conda's
    activation removes the variable (also one a package's env_vars.d sets), export drops it."""
    from jupyter_gpuenv.environments.prefix_reader import read_conda_prefix

    prefix = tmp_path / "envs" / "vision"
    (prefix / "conda-meta").mkdir(parents=True)
    pkg_vars = prefix / "etc" / "conda" / "env_vars.d"
    pkg_vars.mkdir(parents=True)
    (pkg_vars / "cuda.json").write_text('{"FROM_PACKAGE": "1", "DROPPED": "package"}')
    state = {"env_vars": {"KEEP": "x", "DROPPED": "***unset***", "SERVER_VAR": "***unset***"}}
    (prefix / "conda-meta" / "state").write_text(json.dumps(state))
    env = activated_env("conda", str(prefix), {"PATH": "/usr/bin", "SERVER_VAR": "server"})
    assert env["KEEP"] == "x" and env["FROM_PACKAGE"] == "1"
    assert "DROPPED" not in env and "SERVER_VAR" not in env
    assert "***unset***" not in env.values()
    assert read_conda_prefix(str(prefix))["env_vars"] == {"KEEP": "x"}
