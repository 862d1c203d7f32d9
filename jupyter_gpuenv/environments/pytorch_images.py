"""Which local images are PyTorch environments, judged from the image config alone.

The official ``pytorch/pytorch`` images set ``PYTORCH_VERSION``, NGC images
(``nvcr.io/nvidia/pytorch``) set ``NVIDIA_PYTORCH_VERSION``; either variable, or a
repository named like them, makes an image an environment without any configuration.
Nothing runs in the image: the config comes from ``docker image inspect``, which is read
once per image id (an id's config never changes), in parallel, and kept in the catalog's
on-disk cache, so a host with hundreds of images costs one listing call per scan once
they are known, in a new process too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import docker.errors
from docker import DockerClient

VERSION_VARIABLES = ("PYTORCH_VERSION", "NVIDIA_PYTORCH_VERSION")
UNTAGGED = "<none>:<none>"
INSPECT_WORKERS = 8
STORE_PREFIX = "image-config:"


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image's config discovery reads."""

    env: tuple[str, ...]
    labels: dict[str, str]

    def variables(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.env if "=" in item)


def repository_of(reference: str) -> str:
    """``registry/ns/repo:tag`` -> ``registry/ns/repo`` (a registry's port stays)."""
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference
    return name


def is_pytorch_repository(repository: str) -> bool:
    """``pytorch/pytorch`` (Docker Hub, any registry mirror) or ``<registry>/nvidia/pytorch``."""
    parts = repository.lower().split("/")
    if parts[0] == "docker.io":
        parts = parts[1:]
    return parts[-2:] == ["pytorch", "pytorch"] or parts[-2:] == ["nvidia", "pytorch"]


def is_pytorch_image(tags: Sequence[str], config: ImageConfig | None) -> bool:
    """A PyTorch version variable in the config, or a PyTorch repository among the tags."""
    if any(is_pytorch_repository(repository_of(tag)) for tag in tags):
        return True
    if config is None:
        return False
    variables = config.variables()
    return any(variables.get(name) for name in VERSION_VARIABLES)


def image_tags(summary: dict[str, Any]) -> list[str]:
    """The image's tags, PyTorch repositories first, then alphabetical (stable naming)."""
    tags = [t for t in summary.get("RepoTags") or [] if t and t != UNTAGGED]
    return sorted(tags, key=lambda t: (not is_pytorch_repository(repository_of(t)), t))


def environment_name(reference: str) -> str:
    """``pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime`` -> ``pytorch-2.9.0-cuda12.1-...``."""
    repository = repository_of(reference)
    tag = reference[len(repository) + 1 :] if len(reference) > len(repository) else ""
    base = repository.rsplit("/", 1)[-1]
    name = f"{base}-{tag}" if tag and tag != "latest" else base
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name)


class ConfigStore(Protocol):
    """Where image configs outlive the process (the catalog's on-disk cache)."""

    def get(self, identity: str) -> dict[str, Any] | None: ...

    def put(self, identity: str, result: dict[str, Any]) -> None: ...


class ImageConfigs:
    """``image id -> ImageConfig``, read once per id by ``inspect``, kept in memory and in
    ``store`` (so a new process, e.g. ``jupyter gpuenv list``, inspects nothing known)."""

    def __init__(self, store: ConfigStore | None = None) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, ImageConfig | None] = {}
        self._store = store
        self.inspected = 0  # images inspected by this process (tests and benchmarks read it)

    def get_many(
        self, client: DockerClient, image_ids: Iterable[str]
    ) -> dict[str, ImageConfig | None]:
        """Configs of ``image_ids``; unknown ones inspected in parallel (None: gone)."""
        wanted = list(dict.fromkeys(image_ids))
        with self._lock:
            missing = [i for i in wanted if i not in self._known]
        if missing and self._store is not None:
            stored = {i: _from_store(self._store.get(STORE_PREFIX + i)) for i in missing}
            with self._lock:
                self._known.update({k: v for k, v in stored.items() if v is not None})
            missing = [i for i in missing if stored[i] is None]
        if missing:
            self.inspected += len(missing)
            workers = min(INSPECT_WORKERS, len(missing))
            with ThreadPoolExecutor(workers, thread_name_prefix="gpuenv-inspect") as pool:
                read = dict(
                    zip(missing, pool.map(lambda i: _inspect(client, i), missing), strict=True)
                )
            if self._store is not None:
                for image_id, image in read.items():
                    if image is not None:
                        stored_form = {"env": list(image.env), "labels": image.labels}
                        self._store.put(STORE_PREFIX + image_id, stored_form)
            with self._lock:
                self._known.update({k: v for k, v in read.items() if v is not None})
                present = set(wanted)
                for stale in [k for k in self._known if k not in present]:
                    del self._known[stale]  # removed images do not pile up
        else:
            read = {}
        with self._lock:
            return {i: self._known.get(i, read.get(i)) for i in wanted}


def _from_store(data: dict[str, Any] | None) -> ImageConfig | None:
    if not isinstance(data, dict) or not isinstance(data.get("env"), list):
        return None
    labels = data.get("labels")
    return ImageConfig(tuple(str(e) for e in data["env"]), dict(labels or {}))


def _inspect(client: DockerClient, image_id: str) -> ImageConfig | None:
    try:
        info = client.api.inspect_image(image_id)
    except docker.errors.APIError:
        return None  # removed between the listing and now: left out of this scan
    config = info.get("Config") or {}
    return ImageConfig(tuple(config.get("Env") or ()), dict(config.get("Labels") or {}))
