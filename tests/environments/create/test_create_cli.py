"""``jupyter gpuenv create / clone / remove`` as a user runs them: the installed command, a
config file, a HOME whose .condarc names the session's local channel, no conda CLI (so
the py-rattler engine), then a kernel started in the created environment."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from jupyter_gpuenv.environments.conda_config import common_install_roots


def gpuenv_command() -> str:
    """The installed script: beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("jupyter-gpuenv")
    command = str(beside) if beside.exists() else shutil.which("jupyter-gpuenv")
    assert command, "the jupyter-gpuenv script is installed with the package"
    return command


def engine() -> str:
    """``auto`` (which must find no CLI and pick rattler) unless this machine has a conda
    install root the CLI would find even with a clean HOME and PATH (/opt/conda)."""
    return "rattler" if common_install_roots(Path("/nonexistent")) else "auto"


def gpuenv(setup, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [
            gpuenv_command(),
            "--config",
            str(setup.config_file(environment_create_engine=engine())),
            *args,
        ],
        capture_output=True,
        text=True,
        env=setup.cli_environ(**env),
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def listed(setup) -> dict[str, dict]:
    data = json.loads(gpuenv(setup, "list", "--json").stdout)
    return {env["name"]: env for env in data["environments"]}


def exported(setup, name: str) -> dict:
    data = yaml.safe_load(gpuenv(setup, "export", name, "--no-builds").stdout)
    data.pop("name"), data.pop("prefix")
    return data


async def test_create_clone_remove_and_a_kernel_runs_in_the_clone(
    create_setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    yml = create_setup.environment_yml(
        ["python", "pip", "gpuenv-demo", "gpuenv-tool"],
        name="alpha",
        pip=[*create_setup.pip_offline(), "ipykernel"],
        variables={"ALPHA_MODE": "on"},
    )
    done = gpuenv(create_setup, "create", "-f", str(yml), "--cuda", "12.4")
    alpha = create_setup.envs / "alpha"
    assert f"Creating {alpha} with rattler (CUDA 12.4 (requested))" in done.stderr
    for step in ("solve:", "download:", "link:", "pip:", "catalog:"):
        assert step in done.stderr
    assert f"Created {alpha} with rattler in " in done.stdout
    envs = listed(create_setup)
    assert envs["alpha"]["ipykernel"] is True and envs["alpha"]["kind"] == "conda"
    assert f"kernel '{envs['alpha']['kernel_name']}'" in done.stdout
    assert (alpha / "share" / "gpuenv-demo" / "variant").read_text() == "cuda\n"

    # clone = export --no-builds, then create; pip reads the user's pip config (offline)
    pip_config = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(create_setup.wheelhouse)}
    gpuenv(create_setup, "clone", "alpha", "-n", "beta", "--cuda", "12.4", **pip_config)
    source, clone = exported(create_setup, "alpha"), exported(create_setup, "beta")
    assert clone == source  # same channels, conda names+versions, pip names+versions, variables
    assert "gpuenv-demo=1.0" in clone["dependencies"]
    assert any(p.startswith("ipykernel==") for p in clone["dependencies"][-1]["pip"])
    assert clone["variables"] == {"ALPHA_MODE": "on"}

    # A kernel in the clone, through the kernelspec the project writes for it.
    gpuenv(create_setup, "kernelspecs", "install")
    beta = listed(create_setup)["beta"]
    for key, value in create_setup.cli_environ().items():
        if key.startswith("JUPYTER_"):
            monkeypatch.setenv(key, value)  # undone after the test
    manager = AsyncKernelManager(
        kernel_name=beta["kernel_name"], kernel_spec_manager=KernelSpecManager()
    )
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        outputs: list[str] = []
        reply = await client.execute_interactive(
            "import sys, os; print(sys.prefix, os.environ.get('ALPHA_MODE'))",
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
            timeout=120,
        )
        assert reply["content"]["status"] == "ok"
        assert "".join(outputs).split() == [str(create_setup.envs / "beta"), "on"]
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)

    refused = gpuenv(create_setup, "remove", "beta", check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert (create_setup.envs / "beta").is_dir()
    gone = gpuenv(create_setup, "remove", "beta", "--yes")
    assert f"Removed {create_setup.envs / 'beta'}" in gone.stdout
    assert "beta" not in listed(create_setup)
    assert create_setup.leftovers() == ["alpha"]


def test_name_goes_to_the_first_writable_envs_dir_and_errors_are_clear(create_setup) -> None:
    blocker = create_setup.root / "a-file"
    blocker.write_text("not a folder")
    unwritable = blocker / "envs"  # cannot be made: its parent is a file
    config = {"conda_envs_dirs": [str(unwritable), str(create_setup.envs)]}
    yml = create_setup.environment_yml(["gpuenv-lib=1.0"], name="first")
    command = gpuenv_command()
    conf = create_setup.config_file(**config)
    run = [command, "--config", str(conf)]
    env = create_setup.cli_environ()
    done = subprocess.run([*run, "create", "-f", str(yml)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert (create_setup.envs / "first" / "conda-meta").is_dir()

    again = subprocess.run(
        [*run, "create", "-f", str(yml)], capture_output=True, text=True, env=env
    )
    assert again.returncode == 1
    assert f"{create_setup.envs / 'first'} already exists (an environment)" in again.stderr

    bad = create_setup.root / "bad.yml"
    bad.write_text("name: x\ndependencies:\n  - python\n  bad: [\n", encoding="utf-8")
    broken = subprocess.run(
        [*run, "create", "-f", str(bad)], capture_output=True, text=True, env=env
    )
    assert broken.returncode == 1 and "not valid YAML at line 4" in broken.stderr

    conflict = create_setup.environment_yml(["gpuenv-lib>=2", "gpuenv-app"], name="clash")
    failed = subprocess.run(
        [*run, "create", "-f", str(conflict)], capture_output=True, text=True, env=env
    )
    assert failed.returncode == 1 and "gpuenv-app" in failed.stderr
    assert create_setup.leftovers() == ["first"]


@pytest.mark.parametrize(
    ("step", "signum"),
    [("download:", signal.SIGTERM), ("link:", signal.SIGINT), ("pip:", signal.SIGTERM)],
)
def test_an_interrupted_create_leaves_nothing(create_setup, step: str, signum: int) -> None:
    yml = create_setup.environment_yml(
        ["python", "pip", "gpuenv-tool"], pip=[*create_setup.pip_offline(), "ipykernel"]
    )
    command = gpuenv_command()
    conf = create_setup.config_file()
    child = subprocess.Popen(
        [command, "--config", str(conf), "create", "-f", str(yml)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=create_setup.cli_environ(),
    )
    assert child.stderr is not None
    lines = []
    for line in child.stderr:
        lines.append(line)
        if line.startswith(step):  # the step has begun: pip, at least, takes seconds more
            child.send_signal(signum)
            break
    rest = child.communicate(timeout=120)[1]
    assert child.returncode == 130, "".join(lines) + rest
    assert "interrupted; no environment was left behind" in rest
    assert create_setup.leftovers() == []
    assert not (create_setup.home / ".conda" / "environments.txt").exists()


def test_remove_refuses_base_installs_and_what_is_not_conda(create_setup, venv_factory) -> None:
    base = create_setup.envs / "base-like"
    (base / "conda-meta").mkdir(parents=True)
    (base / "condabin").mkdir()
    venv = venv_factory(create_setup.root / "venvs" / "tool", ipykernel=False)
    for target, reason in ((base, "base environment; never removed"), (venv, "not a conda")):
        done = gpuenv(create_setup, "remove", str(target), "--yes", check=False)
        assert done.returncode == 1 and reason in done.stderr, done.stderr
        assert target.is_dir()
    plain = create_setup.envs / "plain"  # removable, but the admin turned removing off
    (plain / "conda-meta").mkdir(parents=True)
    off = create_setup.config_file(environment_create_dirs=[])
    command = gpuenv_command()
    refused = subprocess.run(
        [command, "--config", str(off), "remove", str(plain), "--yes"],
        capture_output=True,
        text=True,
        env=create_setup.cli_environ(),
    )
    assert refused.returncode == 1 and "turned off" in refused.stderr
    assert plain.is_dir()
