"""The Environment record: what the catalog knows about one place a kernel can run."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EnvironmentKind = Literal["conda", "venv", "docker"]

KERNEL_NAME_PREFIX = "gpuenv-"


@dataclass
class Environment:
    """One environment as listed by ``GET /gpuenv/api/environments``.

    ``location`` is ``{"prefix": path}`` for conda/venv and
    ``{"image": reference, "image_id": sha, "conda_env": name|None}`` for docker.
    ``cannot_start`` is the reason a kernel start is known to fail on this host (no
    kernelspec is offered then; the environment stays listed). ``settings`` carries the
    docker_images entry (gpus, mounts, ...) for provisioners and
    is not part of the REST payload.
    """

    id: str
    name: str
    kind: EnvironmentKind
    display_name: str
    kernel_name: str
    location: dict[str, Any]
    python_version: str | None = None
    python_executable: str | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    torch_arch_list: list[str] = field(default_factory=list)
    ipykernel: bool = False
    ipykernel_version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    compatibility: dict[str, Any] | None = None
    cannot_start: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The REST representation (``settings`` stays server-side)."""
        data = asdict(self)
        data.pop("settings")
        return data


def environment_id(kind: str, name: str, discriminator: str) -> str:
    """A stable, URL-safe id: readable kind and name, plus a short hash of where it lives.

    The same prefix path (or docker_images key) always yields the same id, so bookmarks,
    kernelspec names and the Lab panel survive a server restart.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "env"
    digest = hashlib.sha1(f"{kind}:{discriminator}".encode()).hexdigest()[:8]
    return f"{kind}-{slug}-{digest}"


def kernel_name_for(env_id: str) -> str:
    """The kernelspec name of an environment (valid per jupyter_client's name rules)."""
    return f"{KERNEL_NAME_PREFIX}{env_id}"
