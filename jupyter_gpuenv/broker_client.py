"""The single-user server's side of the kernel broker: its REST API over HTTP.

On JupyterHub with the broker (``c.GpuEnv.broker_url``) the server has no Docker access;
it asks the broker, which authenticates it through the Hub with the server's own
``$JUPYTERHUB_API_TOKEN``. Calls are synchronous (run them in a thread) and every
failure becomes a :class:`BrokerError` carrying the broker's status and message, so a
refusal reaches the user as the broker worded it.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import requests

from .errors import GpuEnvError

TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
TIMEOUT = 30.0


class BrokerError(GpuEnvError):
    """The broker refused or failed a call (``status`` its HTTP status), or was not reached
    (503)."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


class BrokerClient:
    """Calls of one server to the broker at ``url`` (ends with ``/``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = TIMEOUT) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        self.timeout = timeout
        self._http = requests.Session()
        self._http.trust_env = False  # the broker is the Hub's service, never behind a proxy

    def environments(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "api/environments").get("environments") or [])

    def kernels(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "api/kernels").get("kernels") or [])

    def start(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self._call("POST", "api/kernels", body, timeout=timeout)

    def kernel(self, kernel_id: str) -> dict[str, Any]:
        return self._call("GET", f"api/kernels/{quote(kernel_id, safe='')}")

    def signal(self, kernel_id: str, name: str) -> None:
        self._call("POST", f"api/kernels/{quote(kernel_id, safe='')}/signal", {"signal": name})

    def logs(self, kernel_id: str) -> str:
        return str(self._call("GET", f"api/kernels/{quote(kernel_id, safe='')}/logs").get("logs"))

    def stop(self, kernel_id: str) -> None:
        self._call("DELETE", f"api/kernels/{quote(kernel_id, safe='')}")

    def gpus(self) -> dict[str, Any]:
        return self._call("GET", "api/gpus")

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        if not self.token:
            raise BrokerError(
                f"The kernel broker ({self.url}) needs this server's ${TOKEN_ENV}, which is "
                "not set: start the server from JupyterHub.",
                status=401,
            )
        try:
            response = self._http.request(
                method,
                self.url + path,
                json=body,
                headers={"Authorization": f"token {self.token}"},
                timeout=timeout or self.timeout,
            )
        except requests.RequestException as err:
            raise BrokerError(
                f"The kernel broker at {self.url} cannot be reached ({type(err).__name__}: "
                f"{err}). Ask the administrator whether the gpuenv-broker service runs."
            ) from err
        if response.status_code == 204:
            return {}
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = data.get("message") if isinstance(data, dict) else None
            raise BrokerError(
                str(message or f"The kernel broker answered {response.status_code} to {path}."),
                status=response.status_code,
            )
        if not isinstance(data, dict):
            raise BrokerError(f"The kernel broker answered {path} with no JSON object.", 502)
        return data
