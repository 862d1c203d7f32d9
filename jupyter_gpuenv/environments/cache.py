"""Probe results keyed by content identity, in memory and on disk.

The key is the candidate's ``identity`` (prefix + mtimes, or image id) plus a hash of the
probe script, so a changed environment or a changed probe misses and everything else
hits. The file lives in the Jupyter data dir, so a restarted server (or the CLI) starts
warm. It also keeps the last listing, which ``Catalog.cached_environments`` can show
before the first scan of a new process has finished.

The file belongs to the server's user, who can write anything into it, so it holds
probe facts and the listing's public fields only (never launch settings: those come
from the admin's configuration at launch), and everything read back is validated: an
entry of the wrong shape is dropped and probed again, a listing of the wrong shape is
ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir

from .probe import probe_source
from .probe_result import ProbeResult
from .snapshot import environment_from_json

CACHE_FORMAT = 2
MAX_ENTRIES = 2000


def default_cache_path() -> Path:
    return Path(jupyter_data_dir()) / "gpuenv" / "catalog-cache.json"


def probe_key(identity: str) -> str:
    digest = hashlib.sha1(probe_source().encode("utf-8")).hexdigest()[:10]
    return f"{identity}#{digest}"


class ProbeCache:
    """Thread-safe map identity -> probe result; transient results never reach the disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[ProbeResult, float]] = {}
        self._images: dict[str, dict[str, Any]] = {}
        self._listing: list[dict[str, Any]] | None = None
        self._listing_key: str | None = None
        self._dirty = False
        self._load()

    def get(self, identity: str) -> ProbeResult | None:
        with self._lock:
            entry = self._entries.get(probe_key(identity))
        return None if entry is None else entry[0]

    def put(self, identity: str, result: ProbeResult) -> None:
        with self._lock:
            self._entries[probe_key(identity)] = (result, time.time())
            self._dirty = self._dirty or not result.transient

    def image_configs(self) -> ImageConfigCache:
        """The image-config side of the cache (PyTorch image discovery reads it)."""
        return ImageConfigCache(self)

    def forget_transient(self) -> None:
        """Drop timeouts and Docker errors so the next scan probes those again."""
        with self._lock:
            for key in [k for k, v in self._entries.items() if v[0].transient]:
                del self._entries[key]

    def listing(self, key: str) -> list[dict[str, Any]] | None:
        """The saved listing, if it was made with the same sources (``key``)."""
        return self._listing if self._listing_key == key else None

    def save(self, listing: list[dict[str, Any]] | None = None, key: str | None = None) -> None:
        """Write non-transient entries (newest first, bounded) and the listing, atomically."""
        with self._lock:
            if listing is not None:
                self._dirty = self._dirty or listing != self._listing or key != self._listing_key
                self._listing, self._listing_key = listing, key
            if self.path is None or not self._dirty:
                return
            kept = sorted(
                ((k, v) for k, v in self._entries.items() if not v[0].transient),
                key=lambda item: item[1][1],
                reverse=True,
            )[:MAX_ENTRIES]
            payload = {
                "format": CACHE_FORMAT,
                "probes": {k: {"result": r.to_json(), "at": at} for k, (r, at) in kept},
                "images": dict(list(self._images.items())[-MAX_ENTRIES:]),
                "listing": self._listing,
                "listing_key": self._listing_key,
            }
            self._dirty = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".catalog-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only data dir only costs warmth after a restart

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            return
        probes = data.get("probes")
        if isinstance(probes, dict):
            for key, value in probes.items():
                entry = _valid_entry(value)
                if entry is not None:
                    self._entries[str(key)] = entry
        images = data.get("images")
        if isinstance(images, dict):
            for image_id, value in images.items():
                if _valid_image_config(value):
                    self._images[str(image_id)] = value
        listing = data.get("listing")
        key = data.get("listing_key")
        if _valid_listing(listing) and isinstance(key, str):
            self._listing, self._listing_key = listing, key


class ImageConfigCache:
    """Image configs (``Env`` and labels) by key, kept with the probes; validated on read."""

    def __init__(self, cache: ProbeCache) -> None:
        self._cache = cache

    def get(self, identity: str) -> dict[str, Any] | None:
        with self._cache._lock:
            value = self._cache._images.get(identity)
        return dict(value) if value is not None else None

    def put(self, identity: str, result: dict[str, Any]) -> None:
        if not _valid_image_config(result):
            return
        with self._cache._lock:
            self._cache._images[identity] = dict(result)
            self._cache._dirty = True


def _valid_image_config(value: object) -> bool:
    """``{"env": [str, ...], "labels": {str: str}}`` and nothing else."""
    if not isinstance(value, dict) or set(value) != {"env", "labels"}:
        return False
    env, labels = value["env"], value["labels"]
    return (
        isinstance(env, list)
        and all(isinstance(item, str) for item in env)
        and isinstance(labels, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    )


def _valid_entry(value: object) -> tuple[ProbeResult, float] | None:
    if not isinstance(value, dict) or set(value) != {"result", "at"}:
        return None
    at = value["at"]
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        return None
    result = ProbeResult.from_json(value["result"])
    return None if result is None or result.transient else (result, float(at))


def _valid_listing(listing: object) -> bool:
    """Whether every item reads back as an Environment (the public fields, nothing else)."""
    if not isinstance(listing, list):
        return False
    return all(environment_from_json(item) is not None for item in listing)
