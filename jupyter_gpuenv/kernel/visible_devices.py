"""Which GPUs a process sees: NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES as the
NVIDIA container runtime and the CUDA runtime apply them.

Runs inside kernels (``%gpuinfo``): standard library only, Python >= 3.8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def nvidia_visible_ids(value: str | None) -> list[str] | None:
    """The ids NVIDIA_VISIBLE_DEVICES names; None for unset or "all", [] for none/void."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if any(p.lower() == "all" for p in parts):
        return None
    return [p for p in parts if p and p.lower() not in ("none", "void")]


def matches(name: str, index: int | None, uuid: str | None) -> bool:
    """Whether an entry of a visibility list names the device with this index / UUID."""
    text = name.strip()
    if text.isdigit():
        return index is not None and int(text) == index
    return bool(uuid) and text.lower() == (uuid or "").lower()


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
