"""Which kernel a GPU process belongs to.

NVML reports host PIDs. A PID is traced to a kernel two ways:

* container kernels: ``/proc/<pid>/cgroup`` names the container (cgroup v1 and v2,
  cgroupfs and systemd drivers), and the container is matched to the kernel through the
  provisioner's ``container_id`` or, for containers this server does not know (another
  server's, or one started by plain jupyter_client), through the container's labels;
* local kernels: walking up the parent chain (``/proc/<pid>/stat``) until a kernel's
  process appears, so a DataLoader worker or a subprocess counts for its kernel.

The notebook path comes from the server's sessions.
"""

from __future__ import annotations

import os
import pwd
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import docker.errors
from docker import DockerClient

from ..docker import labels
from ..docker.client import docker_client
from ..kernel.gpu_snapshot import GpuProcess, GpuSnapshot

PROC_ROOT = "/proc"
MAX_ANCESTRY = 64
CACHE_LIMIT = 4096

# A 64-hex container id as a path segment, alone or inside a systemd scope name such as
# docker-<id>.scope, cri-containerd-<id>.scope or libpod-<id>.scope.
_CONTAINER_SEGMENT = re.compile(r"(?:^|[-:])([0-9a-f]{64})(?:\.scope)?$")

ContainerLabels = Callable[[str], "dict[str, str] | None"]


@dataclass
class KernelRecord:
    """What this server knows about one of its running kernels."""

    kernel_id: str
    environment_id: str | None = None
    container_id: str | None = None
    pid: int | None = None
    notebook_path: str | None = None


def container_id_from_cgroup(text: str) -> str | None:
    """The innermost container id named in a ``/proc/<pid>/cgroup`` file, if any.

    v1 lines look like ``4:memory:/docker/<id>``, v2 like ``0::/system.slice/docker-<id>.scope``;
    Kubernetes nests ``/kubepods/.../pod<uid>/<id>``. Nested containers (Docker in Docker)
    name several ids: the last segment holding one is the process's own container.
    """
    found = None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for segment in path.split("/"):
            match = _CONTAINER_SEGMENT.search(segment)
            if match:
                found = match.group(1)
    return found


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def read_container_id(pid: int, proc_root: str = PROC_ROOT) -> str | None:
    text = _read(f"{proc_root}/{pid}/cgroup")
    return container_id_from_cgroup(text) if text else None


def read_parent_pid(pid: int, proc_root: str = PROC_ROOT) -> int | None:
    """The parent PID from ``/proc/<pid>/stat`` (parsed after the last ')' of the name)."""
    text = _read(f"{proc_root}/{pid}/stat")
    if not text:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def read_uid(pid: int, proc_root: str = PROC_ROOT) -> int | None:
    for line in (_read(f"{proc_root}/{pid}/status") or "").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def read_name(pid: int, proc_root: str = PROC_ROOT) -> str | None:
    text = _read(f"{proc_root}/{pid}/comm")
    return text.strip() if text else None


def user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class DockerContainerLabels:
    """Labels of a container by id, cached (labels never change); None when unknown.

    The Docker client is created on first use. When the engine cannot be reached,
    lookups answer None without asking it again for ``retry_after`` seconds, so a
    sample never stalls on a dead socket.
    """

    def __init__(
        self,
        client: DockerClient | None = None,
        retry_after: float = 30.0,
        docker_host: str | None = None,
    ) -> None:
        self._client = client
        self._docker_host = docker_host
        self._cache: dict[str, dict[str, str] | None] = {}
        self._retry_after = retry_after
        self._down_until = 0.0
        self._lock = threading.Lock()

    def __call__(self, container_id: str) -> dict[str, str] | None:
        with self._lock:
            if container_id in self._cache:
                return self._cache[container_id]
            if time.monotonic() < self._down_until:
                return None
            return self._lookup(container_id)

    def _lookup(self, container_id: str) -> dict[str, str] | None:
        try:
            client = self._client or docker_client(self._docker_host)
            attrs = client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            self._cache[container_id] = None
            return None
        except Exception:
            self._down_until = time.monotonic() + self._retry_after
            return None
        found = dict((attrs.get("Config") or {}).get("Labels") or {})
        if len(self._cache) >= CACHE_LIMIT:  # containers come and go over months
            self._cache.clear()
        self._cache[container_id] = found
        return found


class ProcessAttributor:
    """Fills the identity fields of every process of a snapshot, in place.

    ``hub_user`` is this server's JupyterHub user; ``own_uid`` the server's uid. A process
    is the user's own when it belongs to one of this server's kernels, to a container
    labelled with ``hub_user``, or (outside JupyterHub, where one unix user is one person)
    to the server's uid.
    """

    def __init__(
        self,
        proc_root: str = PROC_ROOT,
        container_labels: ContainerLabels | None = None,
        hub_user: str = "",
        own_uid: int | None = None,
    ) -> None:
        self.proc_root = proc_root
        self.container_labels = container_labels
        self.hub_user = hub_user
        self.own_uid = os.getuid() if own_uid is None else own_uid

    def attribute(self, snapshot: GpuSnapshot, records: Iterable[KernelRecord] = ()) -> None:
        records = list(records)
        by_pid = {r.pid: r for r in records if r.pid and not r.container_id}
        by_kernel = {r.kernel_id: r for r in records}
        containers = [(r.container_id, r) for r in records if r.container_id]
        parents: dict[int, int | None] = {}
        for proc in snapshot.processes():
            self._attribute_one(proc, by_pid, by_kernel, containers, parents)

    def _attribute_one(
        self,
        proc: GpuProcess,
        by_pid: dict[int, KernelRecord],
        by_kernel: dict[str, KernelRecord],
        containers: list[tuple[str, KernelRecord]],
        parents: dict[int, int | None],
    ) -> None:
        proc.name = read_name(proc.pid, self.proc_root)
        uid = read_uid(proc.pid, self.proc_root)
        proc.container_id = read_container_id(proc.pid, self.proc_root)
        record = None
        container_labels: dict[str, str] = {}
        if proc.container_id:
            record = _match_container(proc.container_id, containers)
            if record is None and self.container_labels is not None:
                container_labels = self.container_labels(proc.container_id) or {}
        else:
            record = self._local_kernel(proc.pid, by_pid, parents)
        if record is not None:
            proc.kernel_id = record.kernel_id
            proc.environment_id = record.environment_id
            proc.notebook_path = record.notebook_path
        elif container_labels.get(labels.KERNEL_ID):
            proc.kernel_id = container_labels[labels.KERNEL_ID]
            proc.environment_id = container_labels.get(labels.ENVIRONMENT_ID) or None
            known = by_kernel.get(proc.kernel_id)
            proc.notebook_path = known.notebook_path if known else None
            record = known
        label_user = container_labels.get(labels.USER) or None
        proc.user = label_user or (user_name(uid) if not proc.container_id else None)
        proc.own = bool(
            record is not None
            or (self.hub_user and label_user == self.hub_user)
            or (not self.hub_user and not proc.container_id and uid == self.own_uid)
        )

    def _local_kernel(
        self, pid: int, by_pid: dict[int, KernelRecord], parents: dict[int, int | None]
    ) -> KernelRecord | None:
        """The kernel whose process is ``pid`` or one of its ancestors."""
        current: int | None = pid
        for _ in range(MAX_ANCESTRY):
            if current is None or current <= 1:
                return None
            if current in by_pid:
                return by_pid[current]
            if current not in parents:
                parents[current] = read_parent_pid(current, self.proc_root)
            current = parents[current]
        return None


def _match_container(
    container_id: str, containers: list[tuple[str, KernelRecord]]
) -> KernelRecord | None:
    """Match full ids against possibly abbreviated ones (``docker ps`` shows 12 chars)."""
    for known, record in containers:
        if (
            container_id == known
            or container_id.startswith(known)
            or known.startswith(container_id)
        ):
            return record
    return None


async def collect_kernel_records(
    kernel_manager: Any, session_manager: Any = None
) -> list[KernelRecord]:
    """This server's kernels with their provisioner's ids and notebook paths.

    Runs on the server's event loop (session storage is bound to it); cheap: no I/O
    besides the in-memory session table.
    """
    paths: dict[str, str] = {}
    if session_manager is not None:
        for session in await session_manager.list_sessions():
            kernel = session.get("kernel") or {}
            path = session.get("path") or (session.get("notebook") or {}).get("path")
            if kernel.get("id") and path:
                paths[kernel["id"]] = path
    records = []
    for kernel_id in list(kernel_manager.list_kernel_ids()):
        try:
            manager = kernel_manager.get_kernel(kernel_id)
        except KeyError:
            continue
        provisioner = getattr(manager, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        records.append(
            KernelRecord(
                kernel_id=kernel_id,
                environment_id=getattr(provisioner, "environment_id", None),
                container_id=getattr(provisioner, "container_id", None),
                pid=pid if isinstance(pid, int) else None,
                notebook_path=paths.get(kernel_id),
            )
        )
    return records
