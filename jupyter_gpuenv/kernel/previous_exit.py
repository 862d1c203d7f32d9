"""How this kernel's previous process ended, as the server told it at launch.

A restart starts a new process (a new container for Docker kernels), so the server
passes what it saw of the old one in ``JUPYTER_GPUENV_PREVIOUS_EXIT`` (JSON: code,
signal, oom_killed, reason, at, restart_count). Runs inside kernels: stdlib only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

PREVIOUS_EXIT_ENV = "JUPYTER_GPUENV_PREVIOUS_EXIT"


def read_previous_exit(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The decoded record, or None when this is the kernel's first process."""
    raw = (os.environ if environ is None else environ).get(PREVIOUS_EXIT_ENV)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("reason") else None


def previous_exit_sentence(data: dict[str, Any] | None) -> str | None:
    """``Previous kernel process (restart 1, at ...): killed: out of memory (...)``."""
    if not data:
        return None
    where = []
    if data.get("restart_count"):
        where.append(f"restart {data['restart_count']}")
    if data.get("at"):
        where.append(f"ended {str(data['at'])[:19].replace('T', ' ')} UTC")
    detail = f" ({', '.join(where)})" if where else ""
    return f"Previous kernel process{detail}: {data['reason']}"
