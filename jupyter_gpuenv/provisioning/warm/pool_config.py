"""``c.GpuEnv.warm_kernels`` as typed pool settings, and which of them can be served.

The config module validates the shape (config.warm_entry_problem); here an entry is
matched to a catalog environment (by id, else by name) and judged: warm kernels exist
for Docker environments on this server's own engine and for conda/venv environments,
always started by this server's own provisioners. Swarm and broker modes are refused as
a whole: their kernels are placed, counted and owned elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ...config import GpuEnv
from ...environments.model import Environment
from ..container.runtimes import runtime_kind
from ..kernelspecs import has_kernel

WARM_KINDS = ("docker", "conda", "venv")


@dataclass(frozen=True)
class WarmSpec:
    """One configured pool: the environment's name or id, the size, what to import."""

    key: str
    count: int
    preimport: tuple[str, ...] = ()
    max_age: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"count": self.count, "preimport": list(self.preimport)}


def warm_specs(config: GpuEnv) -> list[WarmSpec]:
    """The configured pools (entries with a count of 0 included: they keep none)."""
    return [
        WarmSpec(
            key=key,
            count=int(entry.get("count", 0)),
            preimport=tuple(entry.get("preimport") or ()),
            max_age=float(config.warm_kernel_max_age or 0.0),
        )
        for key, entry in sorted(config.warm_kernels.items())
    ]


def mode_refusal(config: GpuEnv) -> str | None:
    """Why this server keeps no warm kernels at all, or None when it may."""
    if not config.warm_kernels:
        return None
    kind = runtime_kind(config)
    if kind != "engine":
        mode = "the kernel broker (broker_url)" if config.broker_url else "Swarm (scheduler)"
        return (
            f"c.GpuEnv.warm_kernels is not available with {mode}: kernels there are placed "
            "and counted by the cluster, not by this server. No warm kernels are started; "
            "remove warm_kernels or use scheduler = 'docker'."
        )
    return None


def find_environment(spec: WarmSpec, environments: Iterable[Environment]) -> Environment | None:
    """The catalog entry ``spec.key`` names: an id first, else a unique name."""
    candidates = list(environments)
    for env in candidates:
        if env.id == spec.key:
            return env
    named = [env for env in candidates if env.name == spec.key]
    return named[0] if len(named) == 1 else None


def environment_refusal(env: Environment) -> str | None:
    """Why no warm kernel is kept for ``env``, or None when one can be."""
    if env.kind not in WARM_KINDS:
        return f"warm kernels exist for Docker, conda and venv environments, not {env.kind}"
    if not has_kernel(env):
        return env.cannot_start or f"{env.display_name} has no kernel (ipykernel missing?)"
    if env.kind == "docker" and os.getuid() == 0:
        return (
            "a server running as root starts each Docker kernel as the owner of its "
            "notebook's folder, so a kernel started ahead would have no known user; run "
            "the server as its user to use warm Docker kernels"
        )
    return None
