"""Catalog (interface placeholder until discovery lands)."""

from __future__ import annotations

from typing import Any

from ..errors import EnvironmentNotFound
from .model import Environment


class Catalog:
    def __init__(self, config: Any, log: Any = None) -> None:
        self.config = config
        self.log = log

    async def list_environments(self, refresh: bool = False) -> list[Environment]:
        return []

    async def get(self, env_id: str) -> Environment:
        raise EnvironmentNotFound(f"no environment with id {env_id!r}")

    async def export(self, env_id: str, no_builds: bool = False, from_history: bool = False):
        raise EnvironmentNotFound(f"no environment with id {env_id!r}")
