"""A real JupyterHub with real system users and the gpuenv kernel broker as a Hub service.

The Hub runs as root with ``LocalProcessSpawner``: every single-user server runs as its
own system account (created here by ``useradd``, with a home under the test folder and no
docker group), in broker mode (``GPUENV_BROKER_URL`` in the spawner's environment). The
broker is a Hub-managed service started by the Hub with the command of the documented
``c.JupyterHub.services`` entry; it alone reaches Docker.

The Python installation may live under a folder the accounts cannot enter (pyenv in
/root); the Hub then runs in a private mount namespace where that folder can be entered
(its entries keep their own permissions), and its servers and the broker inherit it.
Nothing on the host changes. All waits are bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from jupyter_core.paths import jupyter_runtime_dir

from tests.broker.accounts import Account, create_account, delete_account, processes_of
from tests.hub.hub_runner import (
    Hub,
    configurable_http_proxy,
    free_port,
    wait_for,
)
from tests.provisioning.server_process import REPO, _blocked_ancestors

BROKER = "gpuenv-broker"
COUNTED = "gpuenv-broker-counted"
DOCKER_SOCKET = Path("/var/run/docker.sock")

HUB_CONFIG = """# Written by tests/broker/hub_broker.py
c = get_config()  # noqa
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
c.Authenticator.allowed_users = set({users!r})
c.JupyterHub.load_groups = {groups!r}
c.JupyterHub.services = [
    {{"name": "gpuenv-test", "api_token": {service_token!r}}},
    {{
        "name": "{broker}",
        "url": "http://127.0.0.1:{broker_port}",
        "command": [{python!r}, "-m", "jupyter_gpuenv.broker", "--config", {broker_config!r}],
    }},
    # A second broker the tests start themselves (tests/broker/counted_broker.py); the
    # Hub only routes to its url, which the tests call directly on a port of their own.
    {{
        "name": "{counted}",
        "url": "http://127.0.0.1:{counted_port}",
        "api_token": {counted_token!r},
    }},
]
c.JupyterHub.load_roles = [
    {{
        "name": "user",
        "scopes": ["self", "access:services!service={broker}", "access:services!service={counted}"],
    }},
    {{
        "name": "server",
        "scopes": [
            "users:activity!user",
            "access:servers!server",
            "access:services!service={broker}",
        ],
    }},
    {{
        "name": "{broker}",
        "scopes": ["read:users", "read:servers"],
        "services": ["{broker}", "{counted}"],
    }},
    {{
        "name": "gpuenv-test",
        "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "groups"],
        "services": ["gpuenv-test"],
    }},
]
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.environment = {{
    "GPUENV_BROKER_URL": "http://127.0.0.1:{broker_port}/services/{broker}/",
    # The admin's file for all, and before it (so it wins) one for some users only.
    "JUPYTER_CONFIG_PATH": lambda spawner: {config_paths!r}.get(spawner.user.name, {config_path!r}),
}}
c.Spawner.start_timeout = 240
c.Spawner.http_timeout = 240
c.Spawner.poll_interval = 5
c.LocalProcessSpawner.interrupt_timeout = 60
"""

# What every single-user server reads (the admin's file): nothing but the broker's catalog.
SINGLEUSER_CONFIG = """# jupyter_server_config.py of every single-user server (the admin's)
c.GpuEnv.conda_envs_dirs = []
c.GpuEnv.venv_dirs = []
c.GpuEnv.docker_label_discovery = False
c.GpuEnv.docker_discover_pytorch_images = False
c.GpuEnv.kernel_start_timeout = 180
"""


def python_view_prefix(scratch: Path, *more: Path) -> list[str]:
    """A command prefix that runs its command where the Python install (and ``more``, such
    as the proxy's executable) can be reached by all.

    Empty when nothing needed lies behind a folder others cannot enter. Otherwise
    ``unshare -m``, and each such folder is covered by a 0755 copy of itself whose entries
    are bind mounts of the real ones (symlinks copied): the same paths hold the same
    files, each with its own permissions, so what the broker writes there (its runtime
    folder under /root) is where the Docker engine, outside the namespace, finds it.
    """
    # The broker keeps kernels' connection files in root's Jupyter runtime folder: made
    # here, outside the namespace, it is one of the entries bound below (a folder the
    # broker made inside the namespace would live in the view only, unseen by Docker).
    Path(jupyter_runtime_dir()).mkdir(parents=True, exist_ok=True)
    needed = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve(), REPO]
    needed += [Path(p) for p in more]
    blocked = _blocked_ancestors(needed)
    if not blocked:
        return []
    lines = ["set -e", "mount --make-rprivate /"]
    for index, folder in enumerate(sorted(blocked)):
        view = scratch / f"python-view{index}"
        view.mkdir(mode=0o755)
        view.chmod(0o755)
        for entry in sorted(folder.iterdir()):
            if entry.is_symlink():
                (view / entry.name).symlink_to(os.readlink(entry))
                continue
            if entry.is_dir():
                (view / entry.name).mkdir()
            else:
                (view / entry.name).touch()
            lines.append(f'mount --bind "{entry}" "{view / entry.name}"')
        lines.append(f'mount --rbind "{view}" "{folder}"')
    lines.append('exec "$@"')
    return ["unshare", "-m", "--", "sh", "-c", "\n".join(lines), "python-view"]


class HubExited(RuntimeError):
    """The Hub stopped by itself (e.g. its broker service would not start): a failure,
    unlike HubUnavailable, which says this machine cannot run a Hub at all."""


class BrokerHub(Hub):
    """The Hub, its accounts, its groups and the broker; ``hub.broker_url`` is the contract's."""

    def __init__(
        self,
        root: Path,
        names: list[str],
        groups: dict[str, list[str]],
        broker_config: str,
        server_configs: dict[str, str] | None = None,
    ) -> None:
        """``server_configs``: user name -> more jupyter_server_config.py for their server."""
        # Hub's own __init__ writes a different spawner set-up; the attributes its
        # methods use are set here.
        self.root = root
        self.grants = {name: "" for name in names}  # Hub.stop() stops these servers
        self.service_token = secrets.token_hex(32)
        self.public_port = free_port()
        self.proxy = configurable_http_proxy()
        self.broker_port = free_port()
        self.hub_port = free_port()
        self.counted_port = free_port()
        self.counted_token = secrets.token_hex(32)
        self.tokens: dict[str, str] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root / "jupyterhub.log"
        self.http = requests.Session()
        self.http.trust_env = False
        self.accounts: dict[str, Account] = {}
        root.chmod(0o755)
        homes = root / "home"
        homes.mkdir(mode=0o755)
        try:
            for name in names:
                self.accounts[name] = create_account(name, homes)
        except BaseException:
            for account in self.accounts.values():
                delete_account(account)
            raise
        etc = root / "etc"
        etc.mkdir(mode=0o755)
        (etc / "jupyter_server_config.py").write_text(SINGLEUSER_CONFIG)
        config_paths = {}
        for name, text in (server_configs or {}).items():
            own = root / f"etc-{name}"
            own.mkdir(mode=0o755)
            (own / "jupyter_server_config.py").write_text(text)
            config_paths[name] = os.pathsep.join([str(own), str(etc)])
        self.broker_config_path = root / "broker_config.py"
        self.broker_config_path.write_text(broker_config)
        (root / "jupyterhub_config.py").write_text(
            HUB_CONFIG.format(
                public_port=self.public_port,
                hub_port=self.hub_port,
                proxy_api_port=free_port(),
                chp=self.proxy,
                root=root,
                users=sorted(names),
                groups={group: {"users": members} for group, members in groups.items()},
                service_token=self.service_token,
                broker=BROKER,
                broker_port=self.broker_port,
                counted=COUNTED,
                counted_port=self.counted_port,
                counted_token=self.counted_token,
                python=sys.executable,
                broker_config=str(self.broker_config_path),
                config_path=str(etc),
                config_paths=config_paths,
            )
        )

    @property
    def broker_url(self) -> str:
        return f"http://127.0.0.1:{self.broker_port}/services/{BROKER}/"

    def home(self, name: str) -> Path:
        return self.accounts[name].home

    exited = HubExited

    def command_prefix(self) -> list[str]:
        return python_view_prefix(self.root, Path(self.proxy))

    def start(self, timeout: float = 180) -> None:
        super().start(timeout)
        self.wait_for_broker()

    def wait_for_broker(self, timeout: float = 120) -> int:
        """Until the broker answers (an unauthenticated call: 401); returns its PID."""

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise HubExited(f"JupyterHub exited:\n{self.log_tail()}")
            try:
                reply = self.http.get(f"{self.broker_url}api/whoami", timeout=5)
            except requests.RequestException:
                return False
            return reply.status_code == 401

        try:
            wait_for("the broker answering", answers, timeout)
        except TimeoutError as err:
            raise TimeoutError(f"{err}\n--- hub log ---\n{self.log_tail()}") from None
        return wait_for("the broker's process", self.broker_pid, 30)

    def broker_pid(self) -> int | None:
        """The PID of the broker the Hub started (its command names this Hub's config)."""
        marker = str(self.broker_config_path).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in argv and b"jupyter_gpuenv.broker" in argv:
                return int(entry.name)
        return None

    def broker(self, method: str, path: str, token: str | None, **kwargs: Any) -> requests.Response:
        """A request straight to the broker (not through a server), with ``token`` if any."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"token {token}"
        return self.http.request(
            method, f"{self.broker_url}{path}", headers=headers, timeout=300, **kwargs
        )

    def token_with_scopes(self, name: str, scopes: list[str]) -> str:
        reply = self.api(
            "POST",
            f"/users/{name}/tokens",
            json={"note": "gpuenv broker test", "expires_in": 7200, "scopes": scopes},
        )
        assert reply.status_code in (200, 201), reply.text
        return str(reply.json()["token"])

    def server_pid(self, name: str) -> int | None:
        """The PID of ``name``'s single-user server (jupyterhub.singleuser as that user)."""
        for pid in processes_of(self.accounts[name].uid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"jupyterhub.singleuser" in argv:
                return pid
        return None

    def run_as(self, name: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """``argv`` as the account with only its own groups (``runuser``), in its home,
        seeing the files its server sees (the Hub's mount namespace)."""
        assert self.process is not None and self.process.poll() is None, "the Hub is not running"
        home = self.home(name)
        enter = ["nsenter", f"--target={self.process.pid}", "--mount", f"--wd={home}", "--"]
        return subprocess.run(
            [*enter, "runuser", "-u", name, "--", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **kwargs,
        )

    def write_kernelspec_as(
        self,
        name: str,
        spec_name: str,
        config: dict[str, Any],
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """A kernelspec in the account's ~/.local/share/jupyter/kernels, written by it;
        returns its kernel.json's path."""
        spec = {
            "argv": argv or ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "env": env or {},
            "display_name": f"{spec_name} (user-written)",
            "language": "python",
            "metadata": {
                "kernel_provisioner": {
                    "provisioner_name": "gpuenv-docker-provisioner",
                    "config": config,
                }
            },
        }
        folder = f"{self.home(name)}/.local/share/jupyter/kernels/{spec_name}"
        done = self.run_as(
            name,
            ["sh", "-c", f'mkdir -p "{folder}" && cat > "{folder}/kernel.json"'],
            input=json.dumps(spec),
        )
        assert done.returncode == 0, done.stderr
        return f"{folder}/kernel.json"

    def stop(self, timeout: float = 90) -> None:
        try:
            super().stop(timeout)
        finally:
            pid = self.broker_pid()
            if pid is not None:  # the Hub stops its services; this one outlived it
                os.kill(pid, signal.SIGKILL)
            for account in self.accounts.values():
                delete_account(account)
