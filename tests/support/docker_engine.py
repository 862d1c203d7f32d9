"""Make sure a Docker engine answers: install docker.io, start dockerd, wait for the socket.

A fresh Debian machine has neither the package nor a running daemon, and no init system
starts one inside CI containers, so the harness does what a person would do by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import DockerException

from .locks import file_lock

SOCKET_PATH = Path("/var/run/docker.sock")
DEFAULT_HOST = f"unix://{SOCKET_PATH}"
LOG_DIR = Path(tempfile.gettempdir())
DOCKERD_LOG = LOG_DIR / "gpuenv-test-dockerd.log"
APT_LOG = LOG_DIR / "gpuenv-test-apt-docker.log"
# Long enough for image builds that stream little output (pip installing torch).
CLIENT_TIMEOUT = 900


class EngineUnavailable(RuntimeError):
    """The Docker engine cannot run on this machine; the message says why."""


def running_in_ci() -> bool:
    """CI must run the Docker tests, so there a missing engine is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def ensure_docker_engine(timeout: float = 120.0) -> docker.DockerClient:
    """Return a client of a running engine, installing and starting dockerd if needed."""
    client = _answering_client()
    if client is not None:
        return client
    host = os.environ.get("DOCKER_HOST", DEFAULT_HOST)
    if host != DEFAULT_HOST:
        raise EngineUnavailable(f"DOCKER_HOST={host} does not answer; not starting a local one")
    with file_lock("dockerd"):
        # Another session may have started it while we waited for the lock.
        client = _answering_client()
        if client is not None:
            return client
        _install_docker_if_missing()
        process = _start_dockerd()
        return _wait_for_engine(process, timeout)


def _answering_client() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=CLIENT_TIMEOUT)
        client.ping()
    except DockerException:
        return None
    return client


def _install_docker_if_missing() -> None:
    if shutil.which("dockerd"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineUnavailable(
            "dockerd is not installed, and installing docker.io needs root and apt-get"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(APT_LOG, "ab") as log:
        for command in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io"],
        ):
            result = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=900, check=False
            )
            if result.returncode != 0:
                raise EngineUnavailable(
                    f"{' '.join(command)} failed ({result.returncode}); see {APT_LOG}"
                )
    if not shutil.which("dockerd"):
        raise EngineUnavailable(f"docker.io installed but dockerd is not on PATH; see {APT_LOG}")


def _start_dockerd() -> subprocess.Popen[bytes]:
    if os.geteuid() != 0:
        raise EngineUnavailable(
            f"the Docker socket {SOCKET_PATH} does not answer and starting dockerd needs root"
        )
    log = open(DOCKERD_LOG, "ab")  # handed to the daemon, which outlives us
    # A new session: the daemon serves every later test session, so it must not die with
    # this pytest process or receive its Ctrl-C.
    return subprocess.Popen(
        ["dockerd"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_engine(process: subprocess.Popen[bytes], timeout: float) -> docker.DockerClient:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineUnavailable(
                f"dockerd exited with status {process.returncode}: {_log_tail()}"
            )
        if SOCKET_PATH.exists():
            client = _answering_client()
            if client is not None:
                return client
        time.sleep(0.5)
    raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f} s: {_log_tail()}")


def _log_tail(lines: int = 5) -> str:
    try:
        text = DOCKERD_LOG.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) + f" (full log: {DOCKERD_LOG})"
