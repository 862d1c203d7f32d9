"""A derived "kernel layer" image that adds ipykernel to an image that has none.

Official PyTorch images ship no ipykernel. Rather than modifying the user's image, a
small image is built ``FROM`` it, once, with ipykernel installed from wheels that the
host fetched with ``pip download`` for the image's Python (containers may have no route to
a package index). It is found again by the label LAYER_BASE_ID = base image id, so a new
base image gets a new layer and an unchanged one is never rebuilt.

``pip download --python-version`` evaluates environment markers against the host's
Python, so dependencies that only the image's Python needs (``exceptiongroup`` on 3.10,
...) are added by reading each wheel's ``Requires-Dist`` with the image's own markers.
"""

from __future__ import annotations

import email.parser
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from docker import DockerClient
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ...docker import labels
from ...docker.runs import run_in_image
from ...errors import GpuEnvError
from ...kernel import interpreter_facts
from ..kernel_errors import KernelStartFailed
from ..kernel_side import CURVE_IPYKERNEL, CURVE_IPYKERNEL_PYTHON
from ..start_progress import StartProgress

LAYER_REPOSITORY = "gpuenv-kernel-layer"
WHEELS_DIR = "gpuenv-wheels"
MAX_DEPENDENCY_ROUNDS = 6

_log = logging.getLogger(__name__)
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class ImagePython:
    """The image's interpreter as pip's platform/ABI options and markers need it."""

    python: str
    version: str
    major_minor: str
    implementation: str
    implementation_version: str
    machine: str
    libc: str
    musl: bool
    ipykernel: bool
    pip: bool = False

    def pip_target_options(self) -> list[str]:
        nodot = self.major_minor.replace(".", "")
        options = [
            "--python-version",
            self.major_minor,
            "--implementation",
            "cp",
            "--abi",
            f"cp{nodot}",
            "--only-binary=:all:",
        ]
        for platform_tag in self.platform_tags():
            options += ["--platform", platform_tag]
        return options

    def platform_tags(self) -> list[str]:
        arch = self.machine
        if self.musl:
            return [f"musllinux_1_{m}_{arch}" for m in range(2, -1, -1)]
        tags = []
        glibc_minor = 17
        if self.libc.startswith("glibc "):
            try:
                glibc_minor = int(self.libc.split()[1].split(".")[1])
            except (IndexError, ValueError):
                pass
        tags += [f"manylinux_2_{m}_{arch}" for m in range(glibc_minor, 16, -1)]
        tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
        return tags

    def markers(self) -> dict[str, str]:
        env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
        env.update(
            {
                "python_version": self.major_minor,
                "python_full_version": self.version,
                "implementation_name": self.implementation,
                "implementation_version": self.implementation_version,
                "platform_python_implementation": "CPython",
                "platform_machine": self.machine,
                "sys_platform": "linux",
                "platform_system": "Linux",
                "os_name": "posix",
            }
        )
        return env


def _lock_for(base_id: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(base_id, threading.Lock())


def find_layer(client: DockerClient, base_id: str) -> str | None:
    """The id of an existing kernel layer for ``base_id``, if one was built."""
    found = client.images.list(filters={"label": [f"{labels.LAYER_BASE_ID}={base_id}"]})
    return found[0].id if found else None


def ensure_layer(
    client: DockerClient,
    base_id: str,
    image_ref: str,
    python: str,
    timeout: float,
    log: logging.Logger | None = None,
    progress: StartProgress | None = None,
) -> str:
    """The kernel-layer image id for the base image, building it once if needed.

    ``progress`` receives the steps (waiting for another start's build, probing the
    image's Python, downloading wheels, building) as they begin.
    """
    log = log or _log
    existing = find_layer(client, base_id)
    if existing:
        return existing
    lock = _lock_for(base_id)
    if not lock.acquire(blocking=False):
        if progress is not None:
            progress.step(
                "kernel-layer-wait",
                "Waiting for the kernel layer another start is building",
                waiting_for="kernel-layer",
            )
        lock.acquire()
    try:
        existing = find_layer(client, base_id)
        if existing:
            return existing
        deadline = time.monotonic() + timeout
        log.info("Image %s has no ipykernel: building a kernel layer (once)", image_ref)
        if progress is not None:
            progress.step("kernel-layer-probe", "Kernel layer: reading the image's Python")
        target = probe_image_python(client, base_id, python, timeout)
        if target.ipykernel:
            # The caller's "no ipykernel" was stale (a probe during a Docker outage):
            # the image itself runs the kernel.
            log.info(
                "Image %s already has ipykernel for %s; no kernel layer needed", image_ref, python
            )
            return base_id
        with tempfile.TemporaryDirectory(prefix="gpuenv-layer-") as context:
            wheels = Path(context, WHEELS_DIR)
            wheels.mkdir()
            log.info(
                "Kernel layer for %s: downloading ipykernel wheels for Python %s (%s)",
                image_ref,
                target.version,
                target.machine,
            )
            if progress is not None:
                progress.step(
                    "kernel-layer-download",
                    f"Kernel layer: downloading ipykernel wheels for Python {target.version} "
                    f"({target.machine})",
                )
            download_wheels(target, wheels, deadline)
            write_dockerfile(Path(context), base_id, target, client)
            if progress is not None:
                progress.step("kernel-layer-build", "Kernel layer: building the image")
            return build_layer(client, Path(context), base_id, image_ref, deadline, log, progress)
    finally:
        lock.release()


def probe_image_python(
    client: DockerClient, image: str, python: str, timeout: float
) -> ImagePython:
    """The image's interpreter facts, from a short-lived container (removed afterwards)."""
    try:
        run = run_in_image(
            client,
            image,
            [python, "-c", interpreter_facts.source()],
            "kernel-layer",
            max(5.0, min(timeout, 120.0)),
        )
    except GpuEnvError as err:
        raise KernelStartFailed(f"Could not run {python} in image {image}: {err.message}") from err
    if run.exit_code != 0:
        reason = "timed out" if run.timed_out else f"exit {run.exit_code}"
        raise KernelStartFailed(
            f"{python} does not run in image {image} ({reason}): " + _tail(run.stderr or run.stdout)
        )
    try:
        data = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as err:
        raise KernelStartFailed(
            f"Unexpected probe output from {image}: {_tail(run.stdout)}"
        ) from err
    return ImagePython(python=python, **data)


def download_wheels(target: ImagePython, dest: Path, deadline: float) -> None:
    """ipykernel + pip wheels for the image's Python, closed over its own markers."""
    pending = [ipykernel_requirement(target), "pip"]
    for _ in range(MAX_DEPENDENCY_ROUNDS):
        _pip_download(target, dest, pending, deadline)
        pending = missing_requirements(dest, target.markers())
        if not pending:
            return
    raise KernelStartFailed(f"Could not gather ipykernel's dependencies: still missing {pending}")


def ipykernel_requirement(target: ImagePython) -> str:
    """ipykernel, at least the version with CurveZMQ channels where the Python runs it."""
    if Version(target.major_minor) >= Version(CURVE_IPYKERNEL_PYTHON):
        return f"ipykernel>={CURVE_IPYKERNEL}"
    return "ipykernel"


def _pip_download(target: ImagePython, dest: Path, reqs: list[str], deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise KernelStartFailed("The kernel layer build ran past image_build_timeout.")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-input",
        "--dest",
        str(dest),
        *target.pip_target_options(),
        *reqs,
    ]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=remaining,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        raise KernelStartFailed(
            "Downloading ipykernel wheels ran past image_build_timeout."
        ) from err
    if proc.returncode != 0:
        raise KernelStartFailed(
            f"pip download of {', '.join(reqs)} for Python {target.major_minor} failed: "
            + _tail(proc.stderr or proc.stdout)
        )


def missing_requirements(wheels: Path, markers: dict[str, str]) -> list[str]:
    """Requirements of the downloaded wheels that apply to the image but have no wheel."""
    have: set[str] = set()
    needed: dict[str, str] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        have.add(canonicalize_name(wheel.name.split("-", 1)[0]))
        for raw in _requires_dist(wheel):
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate(dict(markers, extra="")):
                continue
            needed.setdefault(canonicalize_name(req.name), str(req).split(";")[0].strip())
    return sorted(spec for name, spec in needed.items() if name not in have)


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(".dist-info/METADATA") and name.count("/") == 1:
                meta = email.parser.BytesParser().parsebytes(zf.read(name))
                return list(meta.get_all("Requires-Dist") or [])
    return []


def write_dockerfile(
    context: Path, base_id: str, target: ImagePython, client: DockerClient
) -> None:
    """FROM the base image id, install from the wheels as root, restore the image's user."""
    pip_wheel = sorted(context.joinpath(WHEELS_DIR).glob("pip-*.whl"))[-1].name
    user = (client.images.get(base_id).attrs.get("Config") or {}).get("User") or ""
    install = [
        target.python,
        f"/tmp/{WHEELS_DIR}/{pip_wheel}/pip",
        "install",
        "--no-index",
        "--find-links",
        f"/tmp/{WHEELS_DIR}",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--root-user-action=ignore",
        "--break-system-packages",
        "ipykernel",
    ]
    lines = [
        f"FROM {base_id}",
        "USER 0:0",
        f"COPY {WHEELS_DIR} /tmp/{WHEELS_DIR}",
        "RUN " + json.dumps(install),
    ]
    if user:
        lines.append(f"USER {user}")
    context.joinpath("Dockerfile").write_text("\n".join(lines) + "\n")


def build_layer(
    client: DockerClient,
    context: Path,
    base_id: str,
    image_ref: str,
    deadline: float,
    log: logging.Logger,
    progress: StartProgress | None = None,
) -> str:
    """docker build, streaming progress to the log; returns the new image id."""
    tag = f"{LAYER_REPOSITORY}:{base_id.split(':')[-1][:12]}"
    started = time.monotonic()
    image_id = None
    try:
        stream = client.api.build(
            path=str(context),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            labels={labels.LAYER_BASE_ID: base_id, labels.ROLE: "kernel-layer"},
            timeout=max(1, int(deadline - started)),
        )
        for chunk in stream:
            if "error" in chunk:
                raise KernelStartFailed(
                    f"Building the ipykernel layer for {image_ref} failed: {chunk['error']}"
                )
            line = (chunk.get("stream") or "").strip()
            if line:
                log.info("Kernel layer for %s: %s", image_ref, line)
                if progress is not None:
                    progress.detail(line)
            aux = chunk.get("aux") or {}
            image_id = aux.get("ID", image_id)
            if time.monotonic() > deadline:
                raise KernelStartFailed(
                    f"Building the ipykernel layer for {image_ref} ran past image_build_timeout."
                )
    except KernelStartFailed:
        raise
    except Exception as err:
        raise KernelStartFailed(
            f"Building the ipykernel layer for {image_ref} failed: {err}"
        ) from err
    layer = image_id or find_layer(client, base_id)
    if not layer:
        raise KernelStartFailed(f"Building the ipykernel layer for {image_ref} gave no image.")
    log.info("Kernel layer for %s built in %.1f s (%s)", image_ref, time.monotonic() - started, tag)
    if progress is not None:
        progress.detail(f"built in {time.monotonic() - started:.1f} s ({tag})")
    return layer


_has_ipykernel: dict[tuple[str, str], bool] = {}


def image_has_ipykernel(client: DockerClient, image_id: str, python: str, timeout: float) -> bool:
    """Probe an image the catalog has not described, once per image id and python."""
    key = (image_id, python)
    if key not in _has_ipykernel:
        _has_ipykernel[key] = probe_image_python(client, image_id, python, timeout).ipykernel
    return _has_ipykernel[key]


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())
