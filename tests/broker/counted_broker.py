"""A second kernel broker on the test Hub, started by a test with settings of its own,
whose every Hub lookup passes through a forwarder that writes it down.

The Hub knows it as the external service ``COUNTED`` (tests/broker/hub_broker.py: its
token may read users and servers; users' tokens may access it). It runs the documented
command, ``python -m jupyter_gpuenv.broker --config FILE``, with the variables the Hub
gives a managed service, except that ``JUPYTERHUB_API_URL`` names the forwarder.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.broker.hub_broker import COUNTED, BrokerHub
from tests.broker.hub_forwarder import HubForwarder
from tests.hub.hub_runner import free_port, wait_for

CONFIG = """# The counted broker's configuration
c.GpuEnvBroker.default_policy = {{"environments": [], "notebook_roots": ["{{home}}"]}}
c.GpuEnvBroker.hub_cache_seconds = {cache_seconds!r}
c.GpuEnvBroker.instance_id = {instance!r}
c.GpuEnvBroker.server_check_interval = 3600.0
"""


class CountedBroker:
    """The running broker: ``call`` it as a user would, ``hub_requests`` it made."""

    def __init__(
        self, hub: BrokerHub, forwarder: HubForwarder, port: int, log_path: Path
    ) -> None:
        self.hub = hub
        self.forwarder = forwarder
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}/services/{COUNTED}/"

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> requests.Response:
        """One request on a connection of its own (the broker closes a connection after
        refusing a request whose body it did not read)."""
        headers = {"Authorization": f"token {token}"} if token else {}
        with requests.Session() as http:
            http.trust_env = False
            return http.request(
                method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def hub_requests(self) -> list[tuple[str, str]]:
        """Every request the broker sent to the Hub so far: (method, path)."""
        return self.forwarder.requests()


@contextmanager
def counted_broker(hub: BrokerHub, cache_seconds: float) -> Iterator[CountedBroker]:
    """The broker with ``hub_cache_seconds`` set, until the block ends."""
    config = hub.root / f"counted-{secrets.token_hex(4)}.py"
    instance = f"gpuenv-broker-counted-{secrets.token_hex(4)}"
    config.write_text(CONFIG.format(cache_seconds=cache_seconds, instance=instance))
    port = free_port()  # taken now: one picked at the Hub's start may be another's by now
    with HubForwarder(("127.0.0.1", hub.hub_port)) as forwarder:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "GPUENV"))}
        env.update(
            JUPYTERHUB_SERVICE_NAME=COUNTED,
            JUPYTERHUB_API_TOKEN=hub.counted_token,
            JUPYTERHUB_API_URL=f"http://127.0.0.1:{forwarder.port}/hub/api",
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
            JUPYTERHUB_SERVICE_PREFIX=f"/services/{COUNTED}/",
        )
        log_path = config.with_suffix(".log")
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "jupyter_gpuenv.broker", "--config", str(config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        broker = CountedBroker(hub, forwarder, port, log_path)
        try:

            def answers() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"the broker exited:\n{log_path.read_text()}")
                try:  # no token: refused before any Hub lookup
                    reply = broker.call("GET", "api/whoami", None)
                except requests.RequestException:
                    return False
                return reply.status_code == 401

            wait_for("the counted broker answering", answers, 120)
            assert broker.hub_requests() == []
            yield broker
        except BaseException:
            print(f"--- the counted broker's log ---\n{broker.log()}")
            raise
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
