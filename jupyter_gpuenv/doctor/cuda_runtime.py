"""The CUDA runtime of an environment without PyTorch, from what is installed in it.

JAX, CuPy, TensorFlow or plain CUDA environments carry a CUDA runtime too, and it needs a
driver just the same. Where the catalog has no ``torch.version.cuda`` the doctor reads:

* conda prefixes: the ``cuda-version`` pin, else ``cuda-cudart`` or ``cudatoolkit``
  (``conda-meta/<name>-<version>-<build>.json``);
* pip installs in any prefix: ``nvidia-cuda-runtime-cu12`` / ``nvidia-cuda-runtime``
  (``site-packages/nvidia_cuda_runtime*.dist-info``);
* Docker images: ``CUDA_VERSION`` of the image's environment, set by NVIDIA's CUDA base
  images (metadata only, nothing runs).

Server and CLI side; files are only listed and a few small ones read.
"""

from __future__ import annotations

import glob
import json
import os
import re
import threading
from typing import Any

from docker import DockerClient

from ..kernel.versions import format_major_minor, major_minor

# conda package names, most telling first.
CONDA_PACKAGES = ("cuda-version", "cuda-cudart", "cudatoolkit")
DIST_INFO = re.compile(r"^nvidia_cuda_runtime(?:_cu\d+)?-(\d+(?:\.\d+)+)\.dist-info$")


def cuda_runtime_of(env: Any, docker_client: DockerClient | None = None) -> tuple[str, str] | None:
    """``("12.1", "conda package cuda-cudart 12.1.105")`` or None when nothing says."""
    location = getattr(env, "location", None) or {}
    prefix = location.get("prefix")
    if prefix:
        return conda_runtime(prefix) or pip_runtime(prefix)
    image = location.get("image_id") or location.get("image")
    if image and docker_client is not None:
        return image_runtime(docker_client, image)
    return None


def conda_runtime(prefix: str) -> tuple[str, str] | None:
    meta = os.path.join(prefix, "conda-meta")
    try:
        names = os.listdir(meta)
    except OSError:
        return None
    for package in CONDA_PACKAGES:
        for name in sorted(names):
            if not (name.startswith(package + "-") and name.endswith(".json")):
                continue
            record = _read_json(os.path.join(meta, name))
            version = record.get("version") if record.get("name") == package else None
            mm = major_minor(version)
            if mm:
                return format_major_minor(mm), f"conda package {package} {version}"
    return None


def pip_runtime(prefix: str) -> tuple[str, str] | None:
    pattern = os.path.join(prefix, "lib", "python*", "site-packages", "nvidia_cuda_runtime*")
    for path in sorted(glob.glob(pattern)):
        match = DIST_INFO.match(os.path.basename(path))
        if match:
            mm = major_minor(match.group(1))
            if mm:
                project = os.path.basename(path).split("-")[0].replace("_", "-")
                return format_major_minor(mm), f"pip package {project} {match.group(1)}"
    return None


_image_cache: dict[str, tuple[str, str] | None] = {}
_image_lock = threading.Lock()


def image_runtime(client: DockerClient, image: str) -> tuple[str, str] | None:
    """``CUDA_VERSION`` of an image's environment; remembered per image id."""
    with _image_lock:
        if image in _image_cache:
            return _image_cache[image]
    try:
        attrs = client.images.get(image).attrs
    except Exception:
        return None  # Docker down or image gone: unknown, and not remembered
    found = None
    for item in (attrs.get("Config") or {}).get("Env") or []:
        name, _, value = item.partition("=")
        version = major_minor(value) if name == "CUDA_VERSION" else None
        if version:
            found = (format_major_minor(version), f"image CUDA_VERSION={value}")
    with _image_lock:
        _image_cache[image] = found
    return found


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
