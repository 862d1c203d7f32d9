"""Docker images as environments: the configured ``docker_images`` and opt-in labelled images.

Discovery asks the engine for image metadata only. Code runs inside an image only through
:func:`run_in_image`: a short-lived container (labelled with its role, network disabled,
a non-root user, a time limit) that is always removed afterwards.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DockerUnavailable, EnvironmentNotFound
from ..provisioning import labels
from .candidates import Candidate

DEFAULT_CONDA_ROOT = "/opt/conda"
UNPRIVILEGED_UID = "65534:65534"  # nobody:nogroup
MAX_OUTPUT_BYTES = 8 * 1024 * 1024


class ImageMissing(EnvironmentNotFound):
    """The image was removed after it was listed."""


def docker_client(timeout: float = 20.0) -> Any:
    """A docker-py client, or DockerUnavailable with the reason the engine did not answer."""
    try:
        import docker

        return docker.from_env(timeout=int(max(1, timeout)))
    except Exception as exc:  # docker-py raises DockerException, requests errors, OSError
        raise DockerUnavailable(f"Docker is not reachable: {_short(exc)}") from exc


def conda_python(conda_env: str | None, image_env: Sequence[str] = ()) -> str | None:
    """The interpreter of a conda env inside an image (``base`` is the root prefix)."""
    if not conda_env:
        return None
    root = conda_root(image_env)
    if conda_env == "base":
        return f"{root}/bin/python"
    return f"{root}/envs/{conda_env}/bin/python"


def conda_root(image_env: Sequence[str] = ()) -> str:
    """The image's conda root: $CONDA_DIR / $CONDA_ROOT / $MAMBA_ROOT_PREFIX, else /opt/conda."""
    values = dict(item.split("=", 1) for item in image_env if "=" in item)
    for var in ("CONDA_DIR", "CONDA_ROOT", "MAMBA_ROOT_PREFIX"):
        if values.get(var):
            return values[var].rstrip("/")
    return DEFAULT_CONDA_ROOT


def image_candidates(client: Any, config: Any) -> list[Candidate]:
    """Candidates for configured entries and (unless disabled) labelled local images."""
    found: list[Candidate] = []
    configured_ids: set[str] = set()
    for name in config.docker_images:
        entry = config.docker_entry(name)
        candidate = _configured_candidate(client, name, entry)
        if candidate.location.get("image_id"):
            configured_ids.add(candidate.location["image_id"])
        found.append(candidate)
    if config.docker_label_discovery and not config.restrict_to_configured_images:
        found += _labelled_candidates(client, configured_ids)
    return found


def unreachable_candidates(config: Any, reason: str) -> list[Candidate]:
    """Configured entries listed with the reason when the engine cannot be asked."""
    out = []
    for name in config.docker_images:
        entry = config.docker_entry(name)
        out.append(
            _candidate(
                name,
                name,
                entry,
                image_id=None,
                image_env=(),
                image_labels={},
                problems=[f"{reason}; docker environments cannot start until it answers"],
            )
        )
    return out


def _configured_candidate(client: Any, name: str, entry: dict[str, Any]) -> Candidate:
    import docker.errors

    reference = entry["image"]
    try:
        info = client.api.inspect_image(reference)
    except docker.errors.ImageNotFound:
        problem = (
            f"image {reference} is not present locally; pull or build it first "
            f"(`docker pull {reference}` or `docker build -t {reference} ...`)"
        )
        return _candidate(name, name, entry, None, (), {}, [problem])
    except docker.errors.APIError as exc:
        return _candidate(name, name, entry, None, (), {}, [f"Docker error: {_short(exc)}"])
    config = info.get("Config") or {}
    return _candidate(
        name, name, entry, info["Id"], config.get("Env") or (), config.get("Labels") or {}, []
    )


def _labelled_candidates(client: Any, skip_ids: set[str]) -> list[Candidate]:
    summaries = client.api.images(filters={"label": f"{labels.IMAGE_ENABLE}=true"})
    out = []
    for summary in sorted(summaries, key=lambda s: (s.get("RepoTags") or [""])[0]):
        image_id = summary["Id"]
        image_labels = summary.get("Labels") or {}
        if image_id in skip_ids or labels.LAYER_BASE_ID in image_labels:
            continue  # configured already, or our own ipykernel layer built FROM it
        tags = [t for t in summary.get("RepoTags") or [] if t != "<none>:<none>"]
        reference = tags[0] if tags else image_id
        entry: dict[str, Any] = {"image": reference}
        if image_labels.get(labels.IMAGE_CONDA_ENV):
            entry["conda_env"] = image_labels[labels.IMAGE_CONDA_ENV]
        if image_labels.get(labels.IMAGE_DISPLAY_NAME):
            entry["display_name"] = image_labels[labels.IMAGE_DISPLAY_NAME]
        info = client.api.inspect_image(image_id)
        image_env = (info.get("Config") or {}).get("Env") or ()
        name = reference if tags else image_id.split(":")[-1][:12]
        out.append(
            _candidate(name, f"label:{reference}", entry, image_id, image_env, image_labels, [])
        )
    return out


def _candidate(
    name: str,
    discriminator: str,
    entry: dict[str, Any],
    image_id: str | None,
    image_env: Sequence[str],
    image_labels: dict[str, str],
    problems: list[str],
) -> Candidate:
    conda_env = entry.get("conda_env")
    python = conda_python(conda_env, image_env)
    settings = dict(entry)
    settings["image_id"] = image_id
    return Candidate(
        kind="docker",
        name=name,
        discriminator=discriminator,
        location={"image": entry["image"], "image_id": image_id, "conda_env": conda_env},
        identity=f"docker:{image_id}|{conda_env or ''}" if image_id else None,
        python=python,
        settings=settings,
        labels=dict(image_labels),
        problems=problems,
        display_name=entry.get("display_name"),
    )


@dataclass
class ContainerRun:
    """What a short-lived container left: exit status, output, and whether it ran out of time."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


def probe_user() -> str:
    """Run probes as the server's own uid:gid, or as nobody when the server runs as root."""
    uid, gid = os.getuid(), os.getgid()
    return f"{uid}:{gid}" if uid != 0 else UNPRIVILEGED_UID


def run_in_image(
    client: Any,
    image: str,
    argv: Sequence[str],
    role: str,
    timeout: float,
    environment: dict[str, str] | None = None,
) -> ContainerRun:
    """Run ``argv`` (argv[0] is the interpreter) in a throw-away container of ``image``.

    The container is labelled ``ROLE=<role>`` and with this process's pid and host (so
    ``docker ps --filter label=...`` tells whose it is), has no network, runs as a non-root user, is
    killed after ``timeout`` seconds and is removed in every case.
    """
    import docker.errors
    import requests

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
    except docker.errors.ImageNotFound as exc:
        raise ImageMissing(f"image {image} is no longer present locally") from exc
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise DockerUnavailable(f"Docker is not reachable: {_short(exc)}") from exc
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
            stderr = container.logs(stdout=False, stderr=True)[-64 * 1024 :]
    except docker.errors.APIError as exc:
        # e.g. "executable file not found": the container never ran the interpreter
        return ContainerRun(None, "", _short(exc), False, time.monotonic() - started)
    finally:
        _quietly(lambda: container.remove(force=True))
    return ContainerRun(
        exit_code,
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
        timed_out,
        time.monotonic() - started,
    )


def _quietly(action: Any) -> None:
    try:
        action()
    except Exception:  # cleanup of a container that is already gone
        pass


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
