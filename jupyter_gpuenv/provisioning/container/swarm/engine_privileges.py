"""Whether the swarm can give a kernel service no-new-privileges, asked before anything is made.

A service carries it as ``ContainerSpec.Privileges.NoNewPrivileges`` from Engine API 1.44
on (Docker Engine 25.0, moby commit 42a51cb "Add support for swarm seccomp and
apparmor"). A manager asked at an older API version drops the field without a word
(``adjustForAPIVersion``), and a node whose engine is older runs the task without it. A
start is refused there unless the administrator allowed it (``c.GpuEnv.
swarm_allow_old_engine``); the message names the engine's version and the one needed.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from docker import DockerClient
from docker.utils import version_gte

from ...kernel_errors import KernelRefused

MIN_API_VERSION = "1.44"
MIN_ENGINE = (25, 0)
MIN_ENGINE_TEXT = "Docker Engine 25.0"
OPT_OUT = "c.GpuEnv.swarm_allow_old_engine"

# The manager's engine version per client: asked once, only to word a refusal.
_engine_versions: weakref.WeakKeyDictionary[DockerClient, str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def gives_no_new_privileges(api_version: str) -> bool:
    """Whether a service spec sent at ``api_version`` keeps NoNewPrivileges."""
    return version_gte(api_version, MIN_API_VERSION)


def service_privileges(api_version: str) -> dict[str, Any] | None:
    """ContainerSpec.Privileges for a kernel service sent at ``api_version``; None where
    the engine would drop it (the start passed only with the admin's opt-out)."""
    return {"NoNewPrivileges": True} if gives_no_new_privileges(api_version) else None


def engine_is_new_enough(version: str) -> bool:
    """Whether an engine version string ("27.3.1", "20.10.24+dfsg1") is 25.0 or later;
    one that does not start with major.minor is not taken to be."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return found is not None and (int(found[1]), int(found[2])) >= MIN_ENGINE


def old_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """``name (version)`` of each node (``GET /nodes`` items) whose engine is older."""
    found = []
    for node in nodes:
        description = node.get("Description") or {}
        version = str((description.get("Engine") or {}).get("EngineVersion") or "unknown")
        if not engine_is_new_enough(version):
            name = description.get("Hostname") or str(node.get("ID", ""))[:12]
            found.append(f"{name} ({version})")
    return sorted(found)


def engine_version(client: DockerClient) -> str:
    """The manager's engine version (asked once per client)."""
    with _lock:
        known = _engine_versions.get(client)
    if known is not None:
        return known
    try:
        version = str(client.version(api_version=False).get("Version") or "of unknown version")
    except Exception:
        return "of unknown version"  # not kept: the next refusal asks again
    with _lock:
        _engine_versions[client] = version
    return version


def checked_api_version(client: DockerClient, allow_old_engine: bool) -> str:
    """The API version the kernel's service is sent at, once the swarm can give it
    no-new-privileges or the administrator allowed starting without; KernelRefused else.

    The client's API version was agreed with the manager when the client was made: no
    call here while the manager is new enough, but one listing of the nodes per start
    (they join and upgrade while the server runs).
    """
    api_version = str(client.api.api_version)
    if allow_old_engine:
        return api_version
    if not gives_no_new_privileges(api_version):
        raise KernelRefused(
            f"The kernel was not started: the Swarm manager runs Docker Engine "
            f"{engine_version(client)} (API {api_version}), which cannot start a service "
            f"with no-new-privileges; that needs {MIN_ENGINE_TEXT} (API {MIN_API_VERSION}) "
            "on the manager and every node. Without it a setuid program in the image could "
            "change the kernel's user. Upgrade Docker, or ask the administrator to allow "
            f"kernels without it ({OPT_OUT} = True)."
        )
    old = old_nodes(client.api.nodes())
    if old:
        raise KernelRefused(
            f"The kernel was not started: the swarm's nodes {', '.join(old)} run a Docker "
            f"Engine older than {MIN_ENGINE_TEXT} (API {MIN_API_VERSION}), which would run "
            "the kernel without no-new-privileges; a setuid program in the image could "
            "then change the kernel's user. Upgrade Docker on those nodes, or ask the "
            f"administrator to allow kernels without it ({OPT_OUT} = True)."
        )
    return api_version
