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
    problems: list[dict[str, str]] = field(default_factory=list)
    # Docker environments the kernel broker offers this user (c.GpuEnv.broker_url).
    brokered: list[Environment] = field(default_factory=list)
    by_id: dict[str, Environment] = field(default_factory=dict)
    _json: str | None = None

    def __post_init__(self) -> None:
        self.by_id = {env.id: env for env in self.environments}

    def listing_json(self) -> str:
        """``{"environments": [...], "problems": [...]}`` serialised once per snapshot.

        ``problems`` are the invalid settings of the configuration (see config_check).
        """
        if self._json is None:
            self._json = json.dumps(
                {
                    "environments": [e.to_json() for e in self.environments],
                    "problems": self.problems,
                }
            )
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
    """The REST form, for the listing saved on disk (``settings`` never leave memory)."""
    return env.to_json()


_TEXT_FIELDS = ("id", "name", "display_name", "kernel_name")
_OPTIONAL_TEXT_FIELDS = (
    "python_version",
    "python_executable",
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "ipykernel_version",
    "cannot_start",
)
_LOCATION_KEYS = frozenset({"prefix", "image", "image_id", "conda_env", "tags"})


def environment_from_json(data: object) -> Environment | None:
    """An Environment from a saved listing item, or None when the item is not our shape.

    The file is the user's to write: only the public fields are read, each of its type;
    ``settings`` are never read back (launches take them from the admin's configuration).
    """
    if not isinstance(data, dict):
        return None
    public = {f.name for f in dataclasses.fields(Environment)} - {"settings"}
    if set(data) != public:
        return None
    if not all(isinstance(data[k], str) for k in _TEXT_FIELDS):
        return None
    if data["kind"] not in ("conda", "venv", "docker"):
        return None
    if not all(data[k] is None or isinstance(data[k], str) for k in _OPTIONAL_TEXT_FIELDS):
        return None
    location = data["location"]
    if not isinstance(location, dict) or not set(location) <= _LOCATION_KEYS:
        return None
    if not all(
        v is None or isinstance(v, str) or (k == "tags" and _texts(v)) for k, v in location.items()
    ):
        return None
    if not _texts(data["torch_arch_list"]) or not _texts(data["problems"]):
        return None
    labels = data["labels"]
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        return None
    if not isinstance(data["ipykernel"], bool):
        return None
    if data["compatibility"] is not None and not isinstance(data["compatibility"], dict):
        return None
    return Environment(**data)


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
