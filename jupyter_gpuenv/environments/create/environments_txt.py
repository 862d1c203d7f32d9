"""``~/.conda/environments.txt``: conda records every prefix it creates there, and the
catalog lists every prefix recorded (so a ``-p`` environment outside the envs dirs is
found too). Creating with rattler records it the same way; removing forgets it.
"""

from __future__ import annotations

import os
from pathlib import Path


def _path() -> Path:
    return Path(os.path.expanduser("~")) / ".conda" / "environments.txt"


def add(prefix: Path) -> None:
    """Record ``prefix`` once (conda CLIs may have done it already)."""
    path = _path()
    lines = _read(path)
    if str(prefix) in lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"{prefix}\n")


def forget(prefix: Path) -> None:
    path = _path()
    lines = _read(path)
    if str(prefix) in lines:
        kept = [line for line in lines if line != str(prefix)]
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def _read(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError:
        return []
