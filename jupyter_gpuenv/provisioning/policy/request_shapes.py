"""The shape each kernelspec value must have before the policy looks at it.

A kernelspec is JSON a user wrote: ``"cap_drop": 1`` or ``"image": []`` must be refused
with a message, not crash the start with a TypeError (a 500).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _text(value: object) -> bool:
    return isinstance(value, str)


def _size(value: object) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return isinstance(value, (int, float, str)) and float(value) > 0
    except ValueError:
        return False


def _mounts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(m, (str, dict)) for m in value)


def _names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(c, str) for c in value)


def _variables(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in value.items()
    )


# The shape each kernelspec value must have (user and gpus are parsed on their own).
VALUE_SHAPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "environment_id": (_text, "a string"),
    "image": (_text, "an image reference"),
    "mounts": (_mounts, "a list of 'host:container[:ro]' strings or mappings"),
    "mem_limit": (_size, "a size like '8g'"),
    "shm_size": (_size, "a size like '2g'"),
    "cpus": (_number, "a positive number"),
    "cap_drop": (_names, "a list of capability names"),
    "environment": (_variables, "a mapping of names to values"),
}


def drop_misshapen(requested: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the keys of the right shape, a refusal line per other key); None passes."""
    kept: dict[str, Any] = {}
    refused: list[str] = []
    for key, value in requested.items():
        shape = VALUE_SHAPES.get(key)
        if shape is not None and value is not None and not shape[0](value):
            refused.append(f"{key}={value!r} (must be {shape[1]})")
        else:
            kept[key] = value
    return kept, refused
