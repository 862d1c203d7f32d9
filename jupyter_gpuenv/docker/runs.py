"""Short-lived containers: run a command in an image and collect what it printed.

Every probe of an image (the catalog's environment probe, the kernel layer's interpreter
probe, export) goes through :func:`run_in_image`, so all follow one rule: labelled with
their role and owner, no network, a non-root user, a time limit, output capped, and the
container removed in every case.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound

from ..errors import DockerUnavailable, EnvironmentNotFound
from . import labels
from .client import unreachable_message

UNPRIVILEGED_USER = "65534:65534"  # nobody:nogroup
MAX_OUTPUT_BYTES = 8 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024


class ImageMissing(EnvironmentNotFound):
    """The image was removed after it was listed."""


@dataclass
class ContainerRun:
    """What a short-lived container left: exit status, output, and whether it ran out of time."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


def probe_user() -> str:
    """The server's own uid:gid, or nobody when the server runs as root."""
    uid, gid = os.getuid(), os.getgid()
    return f"{uid}:{gid}" if uid != 0 else UNPRIVILEGED_USER


def run_in_image(
    client: docker.DockerClient,
    image: str,
    argv: Sequence[str],
    role: str,
    timeout: float,
    environment: dict[str, str] | None = None,
) -> ContainerRun:
    """Run ``argv`` (argv[0] is the interpreter) in a throw-away container of ``image``.

    Labelled ``ROLE=<role>`` with this process's pid and host (``docker ps --filter
    label=...`` tells whose it is); no network; a non-root user; killed after ``timeout``
    seconds; removed in every case.
    """
    started = time.monotonic()
    try:
        container = client.containers.create(
            image,
            entrypoint=[argv[0]],
            command=list(argv[1:]),
            labels={
                labels.ROLE: role,
                labels.SERVER_PID: str(os.getpid()),
                labels.SERVER_HOST: socket.gethostname(),
            },
            network_disabled=True,
            user=probe_user(),
            environment=environment or {},
            working_dir="/",
            detach=True,
        )
    except ImageNotFound as exc:
        raise ImageMissing(f"image {image} is no longer present locally") from exc
    except (DockerException, requests.RequestException) as exc:
        raise DockerUnavailable(unreachable_message(exc)) from exc
    timed_out = False
    exit_code: int | None = None
    try:
        container.start()
        try:
            result = container.wait(timeout=max(1, timeout))
            exit_code = int(result.get("StatusCode", -1))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            _quietly(container.kill)
        stdout = container.logs(stdout=True, stderr=False)[-MAX_OUTPUT_BYTES:]
        stderr = b""
        if exit_code != 0:  # only failures need the error output
            stderr = container.logs(stdout=False, stderr=True)[-MAX_ERROR_BYTES:]
    except APIError as exc:
        # e.g. "executable file not found": the container never ran the interpreter
        return ContainerRun(None, "", short_error(exc), False, time.monotonic() - started)
    except requests.RequestException as exc:
        raise DockerUnavailable(unreachable_message(exc)) from exc
    finally:
        _quietly(lambda: container.remove(force=True))
    return ContainerRun(
        exit_code,
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
        timed_out,
        time.monotonic() - started,
    )


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:  # cleanup of a container that is already gone
        pass


def explanation(exc: BaseException) -> str:
    """Docker's own explanation of an API error, else the error's text."""
    return str(getattr(exc, "explanation", None) or exc)


def short_error(exc: BaseException) -> str:
    """An error's text on one screen line (Docker's explanations can be long)."""
    text = explanation(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
