"""What a notebook's record carries so another machine can get its environment back.

- conda and venv environments: their ``export --no-builds`` environment.yml (the same
  text ``jupyter gpuenv export --no-builds`` prints) without its ``prefix:`` line, which
  names a folder of this machine. ``c.GpuEnv.notebook_record_spec`` turns it off;
  ``c.GpuEnv.notebook_record_spec_max_bytes`` leaves out a spec too large for a notebook.
- Docker environments: the image's registry digest (``repo@sha256:...``), what
  ``docker pull`` needs to get exactly that image.

A conda prefix is exported by reading its ``conda-meta`` (export.py's reconstruction, never
a ``conda env export`` subprocess: this runs inside a save), and each answer is kept per
content fingerprint, so saving again costs nothing until the environment changes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from .export import export_environment, reconstruct_conda_export
from .image_pins import image_digest
from .model import Environment

CACHE_LIMIT = 256
_PREFIX_LINE = re.compile(r"(?m)^prefix:.*(?:\n|$)")


class RecordSpecs:
    """Specs and digests for notebook records, remembered per environment content."""

    def __init__(self, config: Any, docker_client: Callable[[], Any] | None = None) -> None:
        self.config = config
        self.docker_client = docker_client
        self._specs: dict[tuple[str, str], str | None] = {}
        self._digests: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def spec(self, env: Environment, fingerprint: str | None) -> str | None:
        """The ``--no-builds`` environment.yml to record, None when off, too large or unreadable."""
        if str(self.config.notebook_record_spec).lower() == "off":
            return None
        if env.kind not in ("conda", "venv") or not fingerprint:
            return None
        key = (env.id, fingerprint)
        with self._lock:
            if key in self._specs:
                return self._specs[key]
        text: str | None = recordable_spec(env)
        limit = int(self.config.notebook_record_spec_max_bytes)
        if text is not None and limit > 0 and len(text.encode("utf-8")) > limit:
            text = None
        with self._lock:
            if len(self._specs) >= CACHE_LIMIT:
                self._specs.clear()
            self._specs[key] = text
        return text

    def image_digest(self, env: Environment) -> str | None:
        """``repo@sha256:...`` of a Docker environment's image, None without one."""
        image_id = env.location.get("image_id")
        if env.kind != "docker" or not image_id or self.docker_client is None:
            return None
        with self._lock:
            if image_id in self._digests:
                return self._digests[image_id]
        try:
            digest = image_digest(self.docker_client(), str(image_id), env.location.get("image"))
        except Exception:  # Docker unreachable now: record without a digest, ask next time
            return None
        value = digest.value if digest is not None and digest.source == "RepoDigests" else None
        with self._lock:
            if len(self._digests) >= CACHE_LIMIT:
                self._digests.clear()
            self._digests[str(image_id)] = value
        return value


def recordable_spec(env: Environment) -> str | None:
    """``env``'s ``--no-builds`` export without the host's prefix; None when unreadable."""
    try:
        if env.kind == "conda":
            text = reconstruct_conda_export(env.name, env.location["prefix"], no_builds=True)
        else:
            _filename, text = export_environment(env, no_builds=True)
    except Exception:  # a record without a spec is still a record
        return None
    return _PREFIX_LINE.sub("", text).rstrip("\n") + "\n"
