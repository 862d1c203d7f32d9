"""A real JupyterHub for tests: configurable-http-proxy from npm, a local spawner, 127.0.0.1.

The Hub runs as its own process with a config file written here; every single-user server
is started by ``SimpleLocalProcessSpawner`` (as this user, HOME under the test folder) with
the GPU grant the Hub config gives its user. The servers see a fake NVML in place of
pynvml (tests/support/fake_nvml.py) through a small launcher script, so GPU status has
GPUs to filter on this GPU-less machine. All waits are bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.support.locks import file_lock

REPO = Path(__file__).resolve().parents[2]
CHP_CACHE = Path(os.environ.get("GPUENV_TEST_CACHE", "~/.cache/jupyter-gpuenv")).expanduser()
CHP_PACKAGE = "configurable-http-proxy@4"

# Two fake GPUs; a process of PID 1 (nobody's kernel) runs on each.
FAKE_GPU_UUIDS = (
    "GPU-00000000-fake-4000-8000-hub000000000",
    "GPU-00000001-fake-4000-8000-hub000000001",
)

LAUNCHER = '''"""Single-user server of the test Hub, with the fake NVML in place of pynvml."""
import importlib.machinery
import importlib.util
import sys

# Loaded by path: the installed jupyter_gpuenv, not the repository's, stays the one served.
spec = importlib.util.spec_from_file_location("gpuenv_fake_nvml", {fake_nvml!r})
fake_nvml = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fake_nvml
spec.loader.exec_module(fake_nvml)

fake = fake_nvml.FakeNvml(
    [fake_nvml.FakeGpu(uuid=u, processes=[fake_nvml.FakeProcess(pid=1)]) for u in {uuids!r}]
)
# The real module's spec: what provisioners mount into kernels stays the real pynvml.
fake.__spec__ = importlib.util.find_spec("pynvml") or importlib.machinery.ModuleSpec(
    "pynvml", None
)
sys.modules["pynvml"] = fake
from jupyterhub.singleuser import main

sys.exit(main())
'''

HUB_CONFIG = """# Written by tests/hub/hub_runner.py
c = get_config()  # noqa
GRANTS = {grants!r}
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set(GRANTS)
c.JupyterHub.services = [{{"name": "gpuenv-test", "api_token": {service_token!r}}}]
c.JupyterHub.load_roles = [
    {{
        "name": "gpuenv-test",
        "scopes": ["admin:users", "admin:servers", "tokens", "list:users"],
        "services": ["gpuenv-test"],
    }}
]
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{root}/home/{{username}}"
c.Spawner.cmd = [{python!r}, {launcher!r}]
c.Spawner.args = ["--ServerApp.allow_root=True"]
c.Spawner.environment = {{
    "GPUENV_GPUS": lambda spawner: GRANTS[spawner.user.name],
    "JUPYTER_CONFIG_PATH": {config_path!r},
}}
c.Spawner.start_timeout = 240
c.Spawner.http_timeout = 240
c.LocalProcessSpawner.interrupt_timeout = 60
"""


class HubUnavailable(RuntimeError):
    """The Hub or its proxy cannot run here; the message says why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configurable_http_proxy() -> str:
    """The proxy's executable: on PATH, or installed once from npm into a cache folder."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    folder = CHP_CACHE / "chp"
    local = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    with file_lock("configurable-http-proxy"):
        if not local.exists():
            npm = shutil.which("npm")
            if npm is None:
                raise HubUnavailable("npm is not installed, so configurable-http-proxy cannot be")
            folder.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(folder),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    CHP_PACKAGE,
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0 or not local.exists():
                raise HubUnavailable(f"npm install {CHP_PACKAGE} failed: {result.stderr[-2000:]}")
    return str(local)


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


class Hub:
    """One JupyterHub process and its users; ``grants`` maps user name -> GPUENV_GPUS."""

    def __init__(self, root: Path, grants: dict[str, str], singleuser_config: str) -> None:
        self.root = root
        self.grants = grants
        self.service_token = secrets.token_hex(32)
        self.public_port = free_port()
        self.tokens: dict[str, str] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root / "jupyterhub.log"
        self.http = requests.Session()
        self.http.trust_env = False  # no proxies: everything is on 127.0.0.1
        etc = root / "etc" / "jupyter"
        etc.mkdir(parents=True)
        (etc / "jupyter_server_config.py").write_text(singleuser_config)
        for name in grants:
            (root / "home" / name).mkdir(parents=True)
        launcher = root / "singleuser_launcher.py"
        launcher.write_text(
            LAUNCHER.format(
                fake_nvml=str(REPO / "tests" / "support" / "fake_nvml.py"),
                uuids=list(FAKE_GPU_UUIDS),
            )
        )
        (root / "jupyterhub_config.py").write_text(
            HUB_CONFIG.format(
                grants=grants,
                public_port=self.public_port,
                hub_port=free_port(),
                proxy_api_port=free_port(),
                chp=configurable_http_proxy(),
                root=root,
                service_token=self.service_token,
                python=sys.executable,
                launcher=str(launcher),
                config_path=str(etc),
            )
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    def home(self, name: str) -> Path:
        return self.root / "home" / name

    # What a Hub that exits by itself during start raises.
    exited: type[Exception] = HubUnavailable

    def command_prefix(self) -> list[str]:
        """What the Hub's command runs under (nothing here; see tests/broker/hub_broker.py)."""
        return []

    def start(self, timeout: float = 180) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "GPUENV"))}
        env["CONFIGPROXY_AUTH_TOKEN"] = secrets.token_hex(32)
        config = self.root / "jupyterhub_config.py"
        command = [sys.executable, "-m", "jupyterhub", "-f", str(config)]
        log = open(self.log_path, "wb")  # noqa: SIM115 - the process owns it until stop()
        self.process = subprocess.Popen(
            self.command_prefix() + command,
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise self.exited(f"JupyterHub exited:\n{self.log_tail()}")
            try:
                return self.http.get(f"{self.url}/hub/api/", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for("JupyterHub answering through the proxy", up, timeout)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        """A Hub REST call (as the test service unless ``token`` says otherwise)."""
        headers = {"Authorization": f"token {token or self.service_token}"}
        return self.http.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kwargs
        )

    def user_request(self, name: str, method: str, path: str, **kwargs: Any) -> Any:
        """A request to ``name``'s single-user server through the proxy, with their token."""
        headers = {"Authorization": f"token {self.tokens[name]}"}
        return self.http.request(
            method, f"{self.url}/user/{name}{path}", headers=headers, timeout=120, **kwargs
        )

    def login(self, name: str) -> str:
        """An API token for ``name``, made by the admin service through the REST API."""
        reply = self.api(
            "POST", f"/users/{name}/tokens", json={"note": "gpuenv hub test", "expires_in": 7200}
        )
        assert reply.status_code in (200, 201), reply.text
        self.tokens[name] = reply.json()["token"]
        return self.tokens[name]

    def server_model(self, name: str) -> dict[str, Any] | None:
        reply = self.api("GET", f"/users/{name}")
        assert reply.status_code == 200, reply.text
        return (reply.json().get("servers") or {}).get("")

    def start_server(self, name: str, timeout: float = 300) -> None:
        """Start as the user (their own token), then wait until the Hub says ready."""
        reply = self.api("POST", f"/users/{name}/server", token=self.tokens[name])
        assert reply.status_code in (201, 202), reply.text

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise HubUnavailable(f"JupyterHub exited:\n{self.log_tail()}")
            model = self.server_model(name)
            return bool(model and model.get("ready"))

        try:
            wait_for(f"{name}'s server ready", ready, timeout, every=1.0)
        except TimeoutError as err:
            raise TimeoutError(f"{err}\n--- hub log ---\n{self.log_tail()}") from None

    def stop_server(self, name: str, timeout: float = 180) -> None:
        reply = self.api("DELETE", f"/users/{name}/server")
        assert reply.status_code in (202, 204), reply.text
        wait_for(f"{name}'s server stopped", lambda: self.server_model(name) is None, timeout)

    def stop(self, timeout: float = 90) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for name in self.grants:
            try:
                if self.server_model(name) is not None:
                    self.stop_server(name, timeout=timeout)
            except Exception:  # the Hub stops the rest itself (cleanup_servers)
                pass
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def execute(hub: Hub, name: str, kernel_id: str, code: str, timeout: float = 120) -> str:
    """Run ``code`` in a kernel over its websocket, through the proxy; return its stdout."""
    import websocket

    url = f"ws://127.0.0.1:{hub.public_port}/user/{name}/api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(
        url, header=[f"Authorization: token {hub.tokens[name]}"], timeout=timeout
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": name,
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
        raise TimeoutError(f"no reply to the execute request within {timeout} s")
    finally:
        ws.close()
