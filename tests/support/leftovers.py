"""What a test run must not leave behind: containers, fresh images, Swarm services and
secrets, network namespaces and extra Docker daemons of the test harness.

``snapshot()`` before the run and again after it; ``appeared()`` names what the run
added. Things that were there before (another run's, the machine's) are not counted.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

import docker
from docker.errors import APIError, DockerException

# Names the harness gives its own network namespaces and extra daemons (tests/support/swarm.py).
HARNESS_MARK = "gpuenv"
FRESH_IMAGES = "gpuenv-test-fresh/"


@dataclass
class Snapshot:
    containers: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    daemons: set[str] = field(default_factory=set)

    def appeared(self, before: Snapshot) -> dict[str, list[str]]:
        """What is here now and was not in ``before``, by kind (empty kinds left out)."""
        found = {
            kind: sorted(getattr(self, kind) - getattr(before, kind))
            for kind in ("containers", "images", "services", "secrets", "namespaces", "daemons")
        }
        return {kind: items for kind, items in found.items() if items}


def snapshot(client: docker.DockerClient | None) -> Snapshot:
    """The harness's things on this machine now; Docker's part only when it answers."""
    taken = Snapshot(namespaces=_namespaces(), daemons=_daemons())
    if client is None:
        return taken
    try:
        for container in client.containers.list(all=True, ignore_removed=True):
            image = ",".join(container.image.tags) if container.image else "?"
            taken.containers.add(f"{container.name} ({container.status}, {image})")
        for image in client.images.list():
            taken.images |= {tag for tag in image.tags if tag.startswith(FRESH_IMAGES)}
        try:
            taken.services = {s["Spec"]["Name"] for s in client.api.services()}
            taken.secrets = {s["Spec"]["Name"] for s in client.api.secrets()}
        except APIError:
            pass  # not a Swarm manager: no services or secrets here
    except DockerException:
        pass
    return taken


def _namespaces() -> set[str]:
    names = {line.split()[0] for line in _lines(["ip", "netns", "list"])}
    return {name for name in names if HARNESS_MARK in name}


def _daemons() -> set[str]:
    """dockerd processes the harness started (their own --data-root), by command line."""
    return {
        line for line in _lines(["pgrep", "-a", "dockerd"])
        if "--data-root" in line and HARNESS_MARK in line
    }  # fmt: skip


def _lines(argv: list[str]) -> list[str]:
    """The non-empty lines a command prints; none when it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in out.stdout.splitlines() if line.strip()]
