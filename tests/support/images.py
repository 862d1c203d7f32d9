"""Test images built on this machine from the recipes in tests/images/ (no registry is reachable).

The base is a Debian bookworm root filesystem made by ``debootstrap --variant=minbase`` and
brought in with ``docker import``; every other image is a Dockerfile whose wheels are
fetched on the host by ``pip download`` into the build context, because pip inside a build
cannot reach an index. Each image is tagged ``gpuenv-test/<name>:<hash12>``, the hash
covering its recipe files and its parent's hash, so a recipe change rebuilds exactly what
depends on it and an unchanged recipe is reused. A file lock per image keeps parallel test
sessions from building the same image twice. Build output goes to log files.

Two images are laid out like published ones (``pytorch-official``, ``ngc-pytorch``): their
build contexts also get files written by tests/support/image_contexts.py (the stand-in
torch, conda records), and they start from ``published-base``, the base's filesystem
exported and imported again with only the config in its ``changes.txt``, so that they
inherit no ENV or label of the test harness and carry only the labels their Dockerfile
sets. ``tag_as`` shows an image under a published name for the length of a ``with`` block.

``python -m tests.support.images [NAME ...]`` builds (or reuses) images and prints timings.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound

from .image_contexts import CONTEXT_WRITERS, WRITER_SOURCES
from .locks import file_lock

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
REPOSITORY = "gpuenv-test"
WORK_DIR = Path(os.environ.get("GPUENV_TEST_WORK_DIR", "/var/tmp/gpuenv-test"))
LOG_DIR = WORK_DIR / "logs"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Bump when the build procedure (not a recipe file) changes in a way that alters images.
BUILDER_VERSION = "2"
# bookworm has glibc 2.36: every manylinux wheel up to that runs there.
WHEEL_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    # Kernels run as the server's uid, which has no home in the image.
    "HOME": "/tmp",
}

# name -> parent image name (None: the debootstrap base).
IMAGE_PARENTS: dict[str, str | None] = {
    "debian-bookworm-python": None,
    "bare-python": "debian-bookworm-python",
    "python-kernel": "debian-bookworm-python",
    "old-ipykernel": "debian-bookworm-python",
    "torch-cpu": "python-kernel",
    "published-base": "debian-bookworm-python",
    "pytorch-official": "published-base",
    "ngc-pytorch": "published-base",
}

# Laid out like published images: no test-harness labels, only those of their Dockerfile.
LIKE_PUBLISHED = {"published-base", "pytorch-official", "ngc-pytorch"}

TITLES = {
    "debian-bookworm-python": "Debian bookworm minbase with python3 (jupyter-gpuenv tests)",
    "bare-python": "python3 without ipykernel (jupyter-gpuenv tests)",
    "python-kernel": "python3 with ipykernel (jupyter-gpuenv tests)",
    "old-ipykernel": "python3 with ipykernel 6.x, without CurveZMQ (jupyter-gpuenv tests)",
    "torch-cpu": "python3, ipykernel and CPU PyTorch 2.13.0 (jupyter-gpuenv tests)",
}

# What this process built or reused, for the pytest summary.
BUILD_REPORT: list[str] = []


class ImageBuildError(RuntimeError):
    """A test image could not be built; the message names the log file."""


class ImagesUnavailable(ImageBuildError):
    """This machine cannot build test images at all (debootstrap needs root)."""


@dataclass(frozen=True)
class Recipe:
    """The files under tests/images/<name>/ and the image they describe."""

    name: str
    parent: str | None

    @property
    def folder(self) -> Path:
        return IMAGES_DIR / self.name

    def recipe_files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def digest(self) -> str:
        """12 hex digits over the recipe files, the builder version and the parent's digest."""
        sha = hashlib.sha256(f"{BUILDER_VERSION}\0{self.name}\0".encode())
        if self.parent:
            sha.update(recipe(self.parent).digest().encode())
        for path in self.recipe_files():
            sha.update(str(path.relative_to(self.folder)).encode() + b"\0")
            sha.update(path.read_bytes() + b"\0")
        if self.name in CONTEXT_WRITERS:
            for path in WRITER_SOURCES:
                sha.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return sha.hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{REPOSITORY}/{self.name}:{self.digest()}"

    def labels(self) -> dict[str, str]:
        if self.name in LIKE_PUBLISHED:
            return {}
        labels = {
            "org.opencontainers.image.title": TITLES.get(self.name, self.name),
            "org.opencontainers.image.description": f"Test image {self.name} of jupyter-gpuenv",
            "org.opencontainers.image.licenses": "BSD-3-Clause",
            "org.opencontainers.image.version": self.digest(),
            "org.jupyter.gpuenv.test-image": self.name,
        }
        if self.parent:
            labels["org.opencontainers.image.base.name"] = recipe(self.parent).tag
        return labels


def recipe(name: str) -> Recipe:
    if name not in IMAGE_PARENTS:
        raise KeyError(f"no test image recipe {name!r}; known: {sorted(IMAGE_PARENTS)}")
    return Recipe(name, IMAGE_PARENTS[name])


def ensure_image(client: docker.DockerClient, name: str) -> str:
    """Return the tag of image ``name``, building it (and its parents) if it is missing."""
    spec = recipe(name)
    tag = spec.tag
    if _exists(client, tag):
        return tag
    parent_tag = ensure_image(client, spec.parent) if spec.parent else None
    with file_lock(f"image-{name}"):
        if _exists(client, tag):  # built by another session while we waited
            BUILD_REPORT.append(f"{tag}: built by another session")
            return tag
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{name}-{spec.digest()}.log"
        started = time.monotonic()
        with open(log_path, "w", encoding="utf-8") as log:
            if parent_tag is None:
                _build_base(client, spec, log)
            elif (spec.folder / "changes.txt").is_file():
                _reimport(client, spec, parent_tag, log)
            else:
                _build_dockerfile(client, spec, parent_tag, log)
        seconds = time.monotonic() - started
        BUILD_REPORT.append(f"{tag}: built in {seconds:.0f} s (log: {log_path})")
        _remove_stale_tags(client, spec)
    return tag


def _remove_stale_tags(client: docker.DockerClient, spec: Recipe) -> None:
    """Untag this image's older recipe versions, so edits to a recipe do not pile up images.

    Images still used by a container (or by a child image) stay; Docker refuses those.
    """
    current = spec.tag
    for image in client.images.list(name=f"{REPOSITORY}/{spec.name}"):
        for tag in image.tags:
            if tag.startswith(f"{REPOSITORY}/{spec.name}:") and tag != current:
                try:
                    client.images.remove(tag)
                except DockerException:
                    pass


@contextmanager
def tag_as(image: str, reference: str, client: docker.DockerClient | None = None) -> Iterator[str]:
    """Give ``image`` the extra local tag ``reference`` while the ``with`` block runs.

    ``with tag_as(pytorch_official_image, "pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime")
    as ref:`` shows the test image under its published name; afterwards the tag is gone
    again (only the tag: the image keeps its ``gpuenv-test/...`` tag). A reference that
    named another image before (a real pull) is pointed back at it; one that already
    named ``image`` stays. A file lock per reference keeps parallel sessions from moving
    the tag under each other; nesting the same reference in one process is an error.
    """
    repository, tag = _split_reference(reference)
    if reference in _HELD_TAGS:
        raise RuntimeError(f"tag_as({reference!r}) is already active in this process")
    own_client = client is None
    if client is None:
        client = docker.from_env()
    try:
        target = client.images.get(image)
        _HELD_TAGS.add(reference)
        with file_lock("tag-" + re.sub(r"[^A-Za-z0-9_.-]", "_", reference)):
            try:
                previous = client.images.get(reference).id
            except ImageNotFound:
                previous = None
            if previous == target.id:
                yield reference
                return
            target.tag(repository, tag)
            try:
                yield reference
            finally:
                if previous is not None:
                    client.api.tag(previous, repository, tag, force=True)
                else:
                    client.images.remove(reference, noprune=True)
    finally:
        _HELD_TAGS.discard(reference)
        if own_client:
            client.close()


_HELD_TAGS: set[str] = set()


def _split_reference(reference: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a registry's ``host:port/`` is part of the repo."""
    if "@" in reference:
        raise ValueError(f"cannot tag with a digest reference: {reference!r}")
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return name, tag


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def debian_mirror() -> str:
    """The Debian mirror apt uses here (the one reachable), from /etc/apt/sources.list*."""
    override = os.environ.get("GPUENV_TEST_DEBIAN_MIRROR")
    if override:
        return override
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.suffix not in ("", ".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        # deb822 stanzas: "URIs: ..." with "Suites: bookworm ..."
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
        # one-line style: "deb [opts] URI bookworm main"
        for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, flags=re.M):
            if match.group(2) == SUITE:
                return match.group(1)
    return DEFAULT_MIRROR


def _build_base(client: docker.DockerClient, spec: Recipe, log) -> None:
    """debootstrap a minbase root filesystem and ``docker import`` it."""
    if os.geteuid() != 0:
        raise ImagesUnavailable("debootstrap needs root to build the base test image")
    _apt_install_if_missing("debootstrap", "debootstrap", log)
    packages = [
        line.strip()
        for line in (spec.folder / "packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    debs = WORK_DIR / "debootstrap-debs"  # kept, so a recipe change downloads little
    debs.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=WORK_DIR))
    try:
        rootfs = work / "rootfs"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            f"--cache-dir={debs}",
            SUITE,
            str(rootfs),
            debian_mirror(),
        ]
        _run(command, log, timeout=1800)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tarball = work / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], log, 600)
        repository, tag = spec.tag.split(":")
        changes = [f"ENV {key}={value}" for key, value in IMAGE_ENV.items()]
        changes += [f'LABEL "{key}"="{value}"' for key, value in spec.labels().items()]
        changes.append('CMD ["python3"]')
        log.write(f"$ docker import {tarball} {spec.tag}\n")
        log.flush()
        result = client.api.import_image_from_file(
            str(tarball), repository=repository, tag=tag, changes=changes
        )
        log.write(f"{result}\n")
        if not _exists(client, spec.tag):
            raise ImageBuildError(f"docker import did not create {spec.tag}: {result}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _reimport(client: docker.DockerClient, spec: Recipe, parent_tag: str, log) -> None:
    """``docker export`` the parent's filesystem, ``docker import`` it with changes.txt only.

    An image's ENV and labels pass to every image built FROM it and cannot be unset
    there; an imported filesystem starts with no config at all.
    """
    changes = [
        line.strip()
        for line in (spec.folder / "changes.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=WORK_DIR))
    container = client.containers.create(parent_tag, command=["true"], network_disabled=True)
    try:
        tarball = work / "rootfs.tar"
        log.write(f"$ docker export {container.id[:12]} ({parent_tag}) > {tarball}\n")
        with open(tarball, "wb") as out:
            for chunk in container.export():
                out.write(chunk)
        repository, tag = spec.tag.split(":")
        log.write(f"$ docker import {' '.join(f'-c {c!r}' for c in changes)} {spec.tag}\n")
        log.flush()
        result = client.api.import_image_from_file(
            str(tarball), repository=repository, tag=tag, changes=changes
        )
        log.write(f"{result}\n")
        if not _exists(client, spec.tag):
            raise ImageBuildError(f"docker import did not create {spec.tag}: {result}")
    finally:
        container.remove(force=True)
        shutil.rmtree(work, ignore_errors=True)


def _build_dockerfile(client: docker.DockerClient, spec: Recipe, parent_tag: str, log) -> None:
    """Copy the recipe into a context, fetch its wheels on the host, ``docker build`` it."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    context = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=WORK_DIR))
    try:
        for path in spec.recipe_files():
            target = context / path.relative_to(spec.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        requirements = spec.folder / "requirements.txt"
        if requirements.is_file():
            wheels = context / "wheels"
            wheels.mkdir()
            shutil.copy2(requirements, wheels / "requirements.txt")
            _download_wheels(requirements, wheels, log)
        writer = CONTEXT_WRITERS.get(spec.name)
        if writer is not None:
            writer(context)
        log.write(f"$ docker build --build-arg BASE={parent_tag} -t {spec.tag} {context}\n")
        log.flush()
        errors = []
        for chunk in client.api.build(
            path=str(context),
            tag=spec.tag,
            buildargs={"BASE": parent_tag},
            labels=spec.labels(),
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        ):
            if "stream" in chunk:
                log.write(chunk["stream"])
            if "error" in chunk:
                errors.append(chunk["error"])
                log.write(f"ERROR: {chunk['error']}\n")
        log.flush()
        if errors or not _exists(client, spec.tag):
            raise ImageBuildError(
                f"building {spec.tag} failed: {' '.join(errors)[-500:]} (log: {log.name})"
            )
    finally:
        shutil.rmtree(context, ignore_errors=True)


def _download_wheels(requirements: Path, wheels: Path, log) -> None:
    """``pip download`` cp311 manylinux wheels (bookworm's python3 is 3.11) on the host."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        *[arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)],
        "-d",
        str(wheels),
        "-r",
        str(requirements),
    ]
    _run(command, log, timeout=1200)


def _apt_install_if_missing(command: str, package: str, log) -> None:
    if shutil.which(command):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-q"], log, 600, env)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package], log, 900, env)


def _run(command: list[str], log, timeout: float, env: dict[str, str] | None = None) -> None:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    result = subprocess.run(
        command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, env=env, check=False
    )
    if result.returncode != 0:
        raise ImageBuildError(f"{command[0]} failed ({result.returncode}); log: {log.name}")


def main(names: list[str]) -> int:
    """Build or reuse the named images (default: all) and print what each took."""
    from .docker_engine import ensure_docker_engine

    client = ensure_docker_engine()
    for name in names or list(IMAGE_PARENTS):
        started = time.monotonic()
        tag = ensure_image(client, name)
        print(f"{tag}  ready in {time.monotonic() - started:.1f} s", flush=True)
    for line in BUILD_REPORT:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
