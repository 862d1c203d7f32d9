"""A real ``jupyter server`` process on a free port, optionally as a non-root user.

The tests run as root, but kernel files must belong to the *server's* user and kernel
containers must not run as root, so the interesting case is a server running as an
ordinary uid. That user has to reach the Python installation; when it lives under a
folder only root can enter (pyenv in /root), the server runs in a private mount
namespace where that folder is replaced by a world-readable view holding just the
needed entries (``unshare -m``, bind mounts), then drops to the uid with ``setpriv``.
Nothing on the host changes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tornado.httpclient
import tornado.websocket

import jupyter_gpuenv
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.server_config import server_config

REPO = Path(jupyter_gpuenv.__file__).resolve().parent.parent
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_shared_dir(prefix: str, uid: int | None, gid: int | None) -> Path:
    """A folder under /tmp that a server running as ``uid`` owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    if uid is not None:
        os.chown(path, uid, gid if gid is not None else uid)
    return path


@dataclass
class ServerProcess:
    """A running server: its URL, token, log, and the process itself."""

    proc: subprocess.Popen
    url: str
    token: str
    home: Path
    log_path: Path
    uid: int
    gid: int
    final_log: str = ""
    _closed: list[bool] = field(default_factory=lambda: [False])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def log_text(self) -> str:
        if self._closed[0]:
            return self.final_log
        return self.log_path.read_text(errors="replace")

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        client = tornado.httpclient.AsyncHTTPClient()
        request = tornado.httpclient.HTTPRequest(
            f"{self.url}{path}",
            method=method,
            headers={**self.headers, "Content-Type": "application/json"},
            body=None if body is None and method in ("GET", "DELETE") else json.dumps(body or {}),
            request_timeout=600,
            allow_nonstandard_methods=True,
        )
        response = await client.fetch(request, raise_error=False)
        text = response.body.decode() if response.body else ""
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        return response.code, payload

    async def channels(self, kernel_id: str) -> KernelSocket:
        ws_url = self.url.replace("http://", "ws://")
        request = tornado.httpclient.HTTPRequest(
            f"{ws_url}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
            headers=self.headers,
        )
        return KernelSocket(await tornado.websocket.websocket_connect(request))

    def kill9(self) -> None:
        """``kill -9``: no shutdown handler, no atexit, kernels left as they are."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if not self._closed[0]:
            self.final_log = self.log_text()
            self._closed[0] = True
            shutil.rmtree(self.home, ignore_errors=True)


def start_server(
    root_dir: Path,
    gpuenv: dict[str, Any],
    uid: int | None = None,
    gid: int | None = None,
    *,
    prepare: Callable[[Path], None] | None = None,
    extra_env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start ``python -m jupyter_server`` with ``c.GpuEnv = gpuenv``; wait until it answers.

    ``prepare(home)`` runs before the start (e.g. to write files into ``home/data``, the
    server's Jupyter data dir); ``extra_env`` is added to the server's environment last
    (e.g. a fake NVML's).
    """
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    home = make_shared_dir("gpuenv-server-", uid, gid)
    for sub in ("config", "data", "runtime", "cache"):
        (home / sub).mkdir()
        os.chown(home / sub, uid, gid)
    config = server_config(**gpuenv)
    (home / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    port, token = free_port(), uuid.uuid4().hex
    argv = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root_dir}",
        f"--IdentityProvider.token={token}",
    ]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "JPY_", "CONDA", "VIRTUAL_ENV"))
    }
    env.update(
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        XDG_CACHE_HOME=str(home / "cache"),
        JUPYTER_PLATFORM_DIRS="0",
        PYTHONPATH=str(REPO),
    )
    env.update(extra_env or {})
    if prepare is not None:
        prepare(home)
    if uid == 0:
        argv.append("--allow-root")
    log_path = home / "server.log"
    command = argv if uid == os.getuid() else as_user(argv, uid, gid, home)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(home),
            stdin=subprocess.DEVNULL,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", token, home, log_path, uid, gid)
    _wait_listening(server, port)
    return server


def _wait_listening(server: ServerProcess, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"jupyter server exited early:\n{server.log_text()[-3000:]}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"jupyter server did not listen within {START_TIMEOUT} s")


def as_user(argv: list[str], uid: int, gid: int, scratch: Path) -> list[str]:
    """``argv`` run as uid:gid (with the Docker socket's group), seeing the Python install."""
    groups = [str(gid)]
    sock = Path("/var/run/docker.sock")
    if sock.exists():
        groups.append(str(sock.stat().st_gid))
    drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={','.join(groups)}", "--"]
    needed = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve(), REPO]
    blocked = _blocked_ancestors(needed)
    if not blocked:
        return drop + argv
    lines = ["set -e", "mount --make-rprivate /"]
    for index, (folder, children) in enumerate(sorted(blocked.items())):
        view = scratch / f"view{index}"
        view.mkdir(mode=0o755)
        view.chmod(0o755)
        for child in sorted(children):
            (view / child).mkdir(mode=0o755)
            lines.append(f'mount --bind "{folder / child}" "{view / child}"')
        lines.append(f'mount --rbind "{view}" "{folder}"')
    lines.append('exec "$@"')
    return ["unshare", "-m", "--", "sh", "-c", "\n".join(lines), "as-user", *drop, *argv]


def _blocked_ancestors(paths: list[Path]) -> dict[Path, set[str]]:
    """Folders others may not enter, with the child each needed path goes through."""
    blocked: dict[Path, set[str]] = {}
    for path in paths:
        parts = path.resolve().parts
        for depth in range(1, len(parts) - 1):
            folder = Path(*parts[: depth + 1])
            if not folder.stat().st_mode & stat.S_IXOTH:
                blocked.setdefault(folder, set()).add(parts[depth + 1])
                break
    return blocked
