"""The installed package as users meet it: the enabled extension, the provisioners, the
``jupyter gpuenv`` command and its configuration, and a plain ``jupyter server`` process."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from jupyter_client.provisioning import KernelProvisionerBase
from jupyter_server.serverapp import ServerApp

from jupyter_gpuenv.config_check import load_checked_config

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROVISIONERS = {
    "gpuenv-docker-provisioner": (
        "jupyter_gpuenv.provisioning.container.provisioner:DockerProvisioner"
    ),
    "gpuenv-local-provisioner": "jupyter_gpuenv.provisioning.local.provisioner:LocalEnvProvisioner",
}


def jupyter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``jupyter ARGS`` with this interpreter; stdout and stderr together, colours off."""
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    result.stdout = ANSI.sub("", result.stdout)
    return result


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with no config of their own (only what the package installs)."""
    home = tmp_path / "home"
    (home / ".jupyter").mkdir(parents=True)
    return dict(
        os.environ,
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
    )


def test_installing_enables_the_server_extension(clean_env):
    shipped = REPO / "jupyter-config" / "jupyter_server_config.d" / "jupyter_gpuenv.json"
    installed = Path(sys.prefix, "etc", "jupyter", "jupyter_server_config.d", shipped.name)
    assert installed.is_file(), f"{installed} missing: install with `pip install .`"
    assert json.loads(installed.read_text()) == json.loads(shipped.read_text())
    shipped_config = json.loads(shipped.read_text())
    assert shipped_config["ServerApp"]["jpserver_extensions"] == {"jupyter_gpuenv": True}

    result = jupyter("server", "extension", "list", env=clean_env)
    assert result.returncode == 0, result.stdout
    assert re.search(r"^\s*jupyter_gpuenv enabled$", result.stdout, re.M), result.stdout
    assert re.search(r"^\s*jupyter_gpuenv \S+ OK$", result.stdout, re.M), result.stdout


def test_installing_ships_the_lab_extension(clean_env):
    bundle = REPO / "jupyter_gpuenv" / "labextension"
    installed = Path(sys.prefix, "share", "jupyter", "labextensions", "jupyter-gpuenv")
    shipped = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert "package.json" in shipped, f"{bundle}: run `cd labextension && npm run build`"
    assert installed.is_dir(), f"{installed} missing: install with `pip install .`"
    present = sorted(str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file())
    # A bundle folder without its line in setup.cfg [options.data_files] is missing here.
    assert present == shipped, "reinstall; is each bundle folder in setup.cfg [options.data_files]?"
    for name in shipped:
        assert (installed / name).read_bytes() == (bundle / name).read_bytes(), name

    result = jupyter("labextension", "list", env=clean_env)
    assert result.returncode == 0, result.stdout
    assert re.search(r"^\s*jupyter-gpuenv v\S+ enabled OK", result.stdout, re.M), result.stdout


def test_provisioners_are_registered_and_load():
    points = {
        ep.name: ep for ep in metadata.entry_points(group="jupyter_client.kernel_provisioners")
    }
    for name, target in PROVISIONERS.items():
        assert points[name].value == target
        assert issubclass(points[name].load(), KernelProvisionerBase)

    result = jupyter("kernelspec", "provisioners")
    assert result.returncode == 0, result.stdout
    for name, target in PROVISIONERS.items():
        assert re.search(rf"^\s*{name}\s+{re.escape(target)}$", result.stdout, re.M), result.stdout


def test_gpuenv_command_help(clean_env):
    result = jupyter("gpuenv", "--help", env=clean_env)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("usage: jupyter gpuenv")
    assert "--config FILE" in result.stdout
    for subcommand in ("list", "export"):
        assert re.search(rf"^\s+{subcommand}\s", result.stdout, re.M), result.stdout


def test_config_file_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "empty"))
    py_config = tmp_path / "admin_config.py"
    py_config.write_text("c.GpuEnv.venv_dirs = ['/srv/venvs']\nc.GpuEnv.gpus = [0]\n")
    config = load_checked_config(str(py_config))
    assert config.venv_dirs == ["/srv/venvs"]
    assert config.gpus.to_json() == ["0"]

    json_config = tmp_path / "admin_config.json"
    json_config.write_text(json.dumps({"GpuEnv": {"venv_dirs": ["/opt/venvs"]}}))
    assert load_checked_config(str(json_config)).venv_dirs == ["/opt/venvs"]

    with pytest.raises(FileNotFoundError):
        load_checked_config(str(tmp_path / "missing.py"))


def test_jupyter_config_dir_is_read_like_jupyter_server(tmp_path, monkeypatch):
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config_dir))
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"GpuEnv": {"venv_dirs": ["/from/json"], "probe_timeout": 5}})
    )
    config = load_checked_config()
    assert (config.venv_dirs, config.probe_timeout) == (["/from/json"], 5)

    # In one folder the .json file wins over the .py one, as in jupyter_server itself.
    (config_dir / "jupyter_server_config.py").write_text(
        "c.GpuEnv.venv_dirs = ['/from/py']\nc.GpuEnv.gpus = 'none'\n"
    )
    config = load_checked_config()
    got = (config.venv_dirs, config.probe_timeout, config.gpus.to_json())
    assert got == (["/from/json"], 5, "none")
    server = ServerApp()
    server.load_config_file()
    assert server.config.GpuEnv.venv_dirs == config.venv_dirs

    # Drop-in folders only switch extensions on in jupyter_server; their settings are not
    # read here either.
    drop_in = config_dir / "jupyter_server_config.d"
    drop_in.mkdir()
    (drop_in / "other.json").write_text(json.dumps({"GpuEnv": {"venv_dirs": ["/drop-in"]}}))
    assert load_checked_config().venv_dirs == ["/from/json"]

    # --config FILE wins over the config path.
    explicit = tmp_path / "explicit.py"
    explicit.write_text("c.GpuEnv.venv_dirs = ['/explicit']\n")
    assert load_checked_config(str(explicit)).venv_dirs == ["/explicit"]


def test_gpuenv_list_reads_config_file(tmp_path, clean_env, venv_factory):
    venv_factory(tmp_path / "venvs" / "analysis")
    config = tmp_path / "gpuenv_config.py"
    config.write_text(
        f"c.GpuEnv.venv_dirs = [{str(tmp_path / 'venvs')!r}]\n"
        "c.GpuEnv.conda_envs_dirs = []\n"
        "c.GpuEnv.docker_label_discovery = False\n"
        "c.GpuEnv.docker_discover_pytorch_images = False\n"
    )
    result = jupyter("gpuenv", "--config", str(config), "list", "--json", env=clean_env)
    assert result.returncode == 0, result.stdout
    listing = json.loads(result.stdout[result.stdout.index("{") :])
    assert [(e["kind"], e["name"]) for e in listing["environments"]] == [("venv", "analysis")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture
def server_process(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A plain ``jupyter server`` on a free port, configured only through its config dir."""
    Path(clean_env["JUPYTER_CONFIG_DIR"], "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "GpuEnv": {
                    "conda_envs_dirs": [],
                    "venv_dirs": [],
                    "docker_label_discovery": False,
                    "docker_discover_pytorch_images": False,
                }
            }
        )
    )
    port, token = free_port(), secrets.token_hex(16)
    root = tmp_path / "notebooks"
    root.mkdir()
    log = open(tmp_path / "server.log", "wb")  # closed in the teardown
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--allow-root"],
        env=clean_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if http_get(f"{base}/api/status", token)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"jupyter server did not start: {(tmp_path / 'server.log').read_text()}")
        yield base, token
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log.close()


def test_plain_jupyter_server_serves_the_api(server_process):
    base, token = server_process
    status, body = http_get(f"{base}/gpuenv/api/environments", token)
    assert (status, body) == (200, {"environments": [], "problems": []})
    status, body = http_get(f"{base}/gpuenv/api/environments")
    assert status in (401, 403) and "message" in body
    status, body = http_get(f"{base}/gpuenv/api/environments", "not-the-token")
    assert status in (401, 403)
