"""GPU grants and visibility lists: which GPUs a user or a process may see.

Three lists name GPUs in the same vocabulary (indexes, ``GPU-<uuid>``, ``MIG-<uuid>``,
"all"/"none"):

* the per-user grant a JupyterHub spawner puts in the single-user server's environment
  (``c.GpuEnv.user_gpus_env``, default ``GPUENV_GPUS``, else ``NVIDIA_VISIBLE_DEVICES``);
* ``NVIDIA_VISIBLE_DEVICES``, which the NVIDIA container runtime applies to containers;
* ``CUDA_VISIBLE_DEVICES``, which the CUDA runtime applies inside a process, renumbering
  the devices it keeps from 0.

Runs inside kernels too (``%gpuinfo``): standard library only, Python >= 3.8.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

NONE_WORDS = ("none", "void", "")
ALL_WORD = "all"
DEFAULT_USER_GPUS_ENV = "GPUENV_GPUS"

T = TypeVar("T")


@dataclass(frozen=True)
class GpuGrant:
    """A set of GPUs: everything (``ids`` None), nothing (empty), or named ones.

    Names are NVML indexes ("0"), GPU UUIDs ("GPU-8f..") or MIG UUIDs ("MIG-2a..").
    """

    ids: tuple[str, ...] | None = None
    source: str | None = None

    @property
    def is_all(self) -> bool:
        return self.ids is None

    @property
    def is_none(self) -> bool:
        return self.ids is not None and not self.ids

    def allows(self, index: int | None, uuid: str | None) -> bool:
        """Whether the GPU (or MIG device) with this index / UUID is granted."""
        if self.ids is None:
            return True
        for name in self.ids:
            if index is not None and name.isdigit() and int(name) == index:
                return True
            if uuid and name.lower() == uuid.lower():
                return True
        return False

    def to_json(self) -> str | list[str]:
        if self.ids is None:
            return ALL_WORD
        return list(self.ids) if self.ids else "none"


def parse_gpu_list(value: str | Sequence[str | int] | None) -> GpuGrant:
    """Parse "all", "none"/"void"/"", "0,1" or "GPU-..,MIG-.." (or a list) into a grant."""
    if value is None:
        return GpuGrant()
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == ALL_WORD:
            return GpuGrant()
        if text.lower() in NONE_WORDS:
            return GpuGrant(ids=())
        parts = [p.strip() for p in text.split(",")]
    else:
        parts = [str(p).strip() for p in value]
    if any(p.lower() == ALL_WORD for p in parts):
        return GpuGrant()
    return GpuGrant(ids=tuple(p for p in parts if p and p.lower() not in NONE_WORDS))


def read_user_grant(
    env_name: str | None = DEFAULT_USER_GPUS_ENV, environ: Mapping[str, str] | None = None
) -> GpuGrant:
    """The GPU grant of this server's user, from its environment as the spawner set it.

    ``env_name`` (``c.GpuEnv.user_gpus_env``) wins; ``NVIDIA_VISIBLE_DEVICES`` is the
    fallback; with neither set, nothing is restricted (a single-user machine).
    """
    env = os.environ if environ is None else environ
    for name in (env_name, "NVIDIA_VISIBLE_DEVICES"):
        if name and name in env:
            grant = parse_gpu_list(env[name])
            return GpuGrant(ids=grant.ids, source=name)
    return GpuGrant()


def apply_cuda_visible_devices(
    value: str | None,
    devices: Sequence[T],
    index_of: Callable[[T], int | None],
    uuid_of: Callable[[T], str | None],
) -> list[T]:
    """The devices a CUDA process sees, in CUDA's order (the list position is its index).

    Follows the CUDA runtime: entries are indexes or (prefixes of) UUIDs; parsing stops
    at the first entry that matches nothing or repeats one; "" or "-1" hides every
    device; unset keeps all. ``index_of``/``uuid_of`` read a device's NVML index and UUID.
    """
    if value is None:
        return list(devices)
    chosen: list[T] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            break
        match = _match_device(entry, devices, index_of, uuid_of)
        if match is None or any(match is c for c in chosen):
            break
        chosen.append(match)
    return chosen


def _match_device(
    entry: str,
    devices: Sequence[T],
    index_of: Callable[[T], int | None],
    uuid_of: Callable[[T], str | None],
) -> T | None:
    if entry.lstrip("-").isdigit():
        wanted = int(entry)
        for dev in devices:
            if index_of(dev) == wanted:
                return dev
        return None
    prefix = entry.lower()
    hits = [d for d in devices if (uuid_of(d) or "").lower().startswith(prefix)]
    return hits[0] if len(hits) == 1 else None
