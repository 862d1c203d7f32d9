"""A published listing, and how it carries over what is known when Docker goes away."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .candidates import Candidate
from .model import Environment


@dataclass
class Snapshot:
    """One published listing; never mutated after publication.

    ``fingerprints`` (id -> what discovery saw) tell a later scan whether anything
    changed; ``*_checked`` are monotonic times of the last look at each source.
    """

    environments: list[Environment]
    fingerprints: dict[str, str]
    docker_candidates: list[Candidate]
    docker_reason: str | None
    local_checked: float
    docker_checked: float
    built: float
    transient: bool = False
    by_id: dict[str, Environment] = field(default_factory=dict)
    _json: str | None = None

    def __post_init__(self) -> None:
        self.by_id = {env.id: env for env in self.environments}

    def listing_json(self) -> str:
        """``{"environments": [...]}`` serialised once per snapshot (the warm REST answer)."""
        if self._json is None:
            self._json = json.dumps({"environments": [e.to_json() for e in self.environments]})
        return self._json

    def checked(self, local: float, docker: float) -> Snapshot:
        """The same listing, re-checked at these times (nothing had changed)."""
        return dataclasses.replace(self, local_checked=local, docker_checked=docker)


def keep_known_versions(env: Environment, known: Environment | None) -> None:
    """Docker is down: keep what the last successful probe said, with the problem."""
    if known is None:
        return
    for name in ("python_version", "torch_version", "cuda_version", "cudnn_version", "labels"):
        setattr(env, name, getattr(known, name))
    env.torch_arch_list = list(known.torch_arch_list)
    env.display_name = known.display_name


def still_known_docker(
    previous: Snapshot, reason: str, current: list[Environment]
) -> list[Environment]:
    """Labelled images seen before stay listed (with the reason) while Docker is down."""
    present = {env.id for env in current}
    kept = []
    for env in previous.environments:
        if env.kind == "docker" and env.id not in present:
            problem = f"{reason} Docker environments cannot start until it answers."
            copy = dataclasses.replace(env, problems=[problem], compatibility=None)
            copy.location = {**env.location, "image_id": None}
            kept.append(copy)
    return kept


def environment_to_json(env: Environment) -> dict[str, Any]:
    """The REST form plus ``settings``, for the listing saved on disk."""
    data = env.to_json()
    data["settings"] = env.settings
    return data


def environment_from_json(data: dict[str, Any]) -> Environment:
    names = {f.name for f in dataclasses.fields(Environment)}
    return Environment(**{k: v for k, v in data.items() if k in names})
