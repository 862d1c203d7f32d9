"""REST: GPU status (filled in by the GPU module)."""

from __future__ import annotations

handlers: list = []
