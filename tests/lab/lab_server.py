"""A real ``jupyter lab`` process for browser tests: free port, token, isolated dirs.

Lab loads the prebuilt extension from the checkout's ``jupyter_gpuenv/labextension`` (what
``pip install .`` ships) through ``JUPYTER_PATH``, ahead of any installed copy, whether the
package is installed editable or not. Its settings, workspaces and runtime files stay in
the test's temporary folder, so no user state leaks in or out.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.server_config import server_config

REPO_ROOT = Path(__file__).resolve().parents[2]
LABEXTENSION = REPO_ROOT / "jupyter_gpuenv" / "labextension"
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LabServer:
    """A running ``jupyter lab``; ``url`` ends with a slash."""

    process: subprocess.Popen[bytes]
    url: str
    token: str
    root_dir: Path
    log_path: Path

    def lab_url(self) -> str:
        return f"{self.url}lab?token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        """JSON from the server's REST API, authenticated with the token."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def text(self, path: str) -> str:
        """A text answer of the server's REST API (an export), authenticated."""
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return str(response.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Graceful stop (kernels shut down, containers removed), then a kill if stuck."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


def start_lab(
    base: Path,
    gpuenv_config: dict[str, Any],
    extra_extensions: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> LabServer:
    """Start ``jupyter lab`` with ``c.GpuEnv`` set from ``gpuenv_config``, every source
    it does not name switched off (as ``server_config`` does for plain servers).

    ``extra_extensions`` are more server extensions to enable (test-only modules under
    ``tests/``, importable because the repository root goes on ``PYTHONPATH``);
    ``extra_env`` is added to the server's environment last (e.g. a fake NVML's).
    """
    if not (LABEXTENSION / "package.json").is_file():
        raise RuntimeError(
            f"{LABEXTENSION} holds no built extension; run `npm ci && npm run build` in "
            "labextension/"
        )
    root_dir = base / "notebooks"
    root_dir.mkdir(parents=True)
    ext_path = base / "jupyter-path" / "labextensions"
    ext_path.mkdir(parents=True)
    (ext_path / "jupyter-gpuenv").symlink_to(LABEXTENSION, target_is_directory=True)
    settings_dir = base / "lab-settings"
    notification = settings_dir / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    # No "get Jupyter news?" toast over the page under test.
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    config = base / "jupyter_server_config.py"
    extensions = {"jupyter_gpuenv": True, **{name: True for name in extra_extensions}}
    lines = [
        f"c.ServerApp.jpserver_extensions = {extensions!r}",
        "c.LabApp.expose_app_in_browser = True",
    ]
    settings = server_config(**gpuenv_config)["GpuEnv"]
    lines += [f"c.GpuEnv.{key} = {value!r}" for key, value in settings.items()]
    config.write_text("\n".join(lines) + "\n")

    port = free_port()
    token = f"lab-e2e-{os.getpid()}-{port}"
    env = dict(os.environ)
    env.update(
        JUPYTER_PATH=os.pathsep.join(
            [str(base / "jupyter-path"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
        ),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
    )
    if extra_extensions:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    env.update(extra_env or {})
    log_path = base / "jupyter-lab.log"
    argv = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--config={config}",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        "--no-browser",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
    ]
    if hasattr(os, "getuid") and os.getuid() == 0:
        argv.append("--allow-root")
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LabServer(process, f"http://127.0.0.1:{port}/", token, root_dir, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{server.log()}")
        try:
            server.api("api/status")
            return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"jupyter lab did not answer within {START_TIMEOUT} s:\n{server.log()}")
