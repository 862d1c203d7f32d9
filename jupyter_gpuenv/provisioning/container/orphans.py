"""Kernel containers never outlive their server for long.

Every kernel container is labelled with the identity of the process that started it
(``ServerInstance``: a random id, PID, PID start time, host name). Two mechanisms remove
containers whose owner is gone:

* at server start (and at the first Docker kernel of a plain jupyter_client process or
  of a kernel launcher, jupyter_gpuenv/launch, which owns its one container),
  containers labelled ROLE=kernel whose owner is another instance that is no longer
  alive on this host are removed, so a ``kill -9`` of a server leaves nothing for ever;
* at normal interpreter exit, containers this process started and did not clean up are
  removed (jupyter_client users that exit without shutting their kernel down).

Copies of connection files (they hold the kernel's HMAC key) live in a private folder
per server process (:func:`private_connection_dir`); the same sweep removes the folders
of processes that are gone.

Owners on another host (a shared daemon) cannot be checked and are left alone.
"""

from __future__ import annotations

import atexit
import getpass
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from docker import DockerClient
from docker.models.containers import Container
from jupyter_core.paths import jupyter_runtime_dir

from ...docker import labels
from ...docker.client import DaemonUnreachable, docker_client

_log = logging.getLogger(__name__)


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot, None when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after it don't.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class ServerInstance:
    """Who started a kernel container: this process, recognisably across PID reuse."""

    id: str
    pid: int
    host: str
    started: str

    @classmethod
    def current(cls) -> ServerInstance:
        pid = os.getpid()
        return cls(
            id=secrets.token_hex(8),
            pid=pid,
            host=socket.gethostname(),
            started=process_start_time(pid) or "",
        )

    def labels(self) -> dict[str, str]:
        return {
            labels.SERVER_ID: self.id,
            labels.SERVER_PID: str(self.pid),
            labels.SERVER_HOST: self.host,
            labels.SERVER_STARTED: self.started,
        }


_instance: ServerInstance | None = None
_instance_lock = threading.Lock()


def this_instance() -> ServerInstance:
    """The instance of this process (a fork gets its own)."""
    global _instance
    with _instance_lock:
        if _instance is None or _instance.pid != os.getpid():
            _instance = ServerInstance.current()
        return _instance


def use_instance_id(instance_id: str) -> ServerInstance:
    """Label this process's containers with a stable id (the kernel broker): a restarted
    process with the same id owns them again, and no sweep takes them for orphans."""
    global _instance
    with _instance_lock:
        current = ServerInstance.current()
        _instance = ServerInstance(instance_id, current.pid, current.host, current.started)
        return _instance


def owner_alive(container_labels: dict[str, str], me: ServerInstance | None = None) -> bool:
    """Whether the process that labelled a container may still be running.

    True for this instance, for a live PID with the same start time on this host, and for
    any owner on another host (we cannot tell).
    """
    me = me or this_instance()
    if container_labels.get(labels.SERVER_ID) == me.id:
        return True
    if container_labels.get(labels.SERVER_HOST) != me.host:
        return True
    try:
        pid = int(container_labels.get(labels.SERVER_PID, ""))
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    started = container_labels.get(labels.SERVER_STARTED)
    if started:
        return process_start_time(pid) in (None, started)
    return True


def find_orphans(client: DockerClient) -> list[Container]:
    """Kernel containers whose owning server is gone."""
    containers = client.containers.list(
        all=True, filters={"label": f"{labels.ROLE}=kernel"}, ignore_removed=True
    )
    me = this_instance()
    return [c for c in containers if not owner_alive(c.labels or {}, me)]


def remove_orphans(client: DockerClient, log: logging.Logger | None = None) -> list[str]:
    """Remove orphaned kernel containers; returns their names."""
    log = log or _log
    removed = []
    for container in find_orphans(client):
        try:
            container.remove(force=True)
        except Exception as err:  # already gone, or the daemon refused: try next time
            log.debug("Could not remove orphaned kernel container %s: %s", container.name, err)
            continue
        log.info(
            "Removed kernel container %s left by a server that is gone (kernel %s)",
            container.name,
            (container.labels or {}).get(labels.KERNEL_ID, "?"),
        )
        removed.append(str(container.name))
    return removed


PRIVATE_DIR_PREFIX = "gpuenv-private-"
LEGACY_CONNECTION_GLOB = "gpuenv-connection-*.json"


def private_connection_dir(runtime_dir: str | None = None) -> str:
    """This process's folder for connection-file copies: ``<runtime>/gpuenv-private-<pid>-<start>``.

    Created 0700 on first use; named after the process so a later server can tell
    whether its owner is alive.
    """
    me = this_instance()
    base = Path(runtime_dir or jupyter_runtime_dir())
    folder = base / f"{PRIVATE_DIR_PREFIX}{me.pid}-{me.started or '0'}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(folder)


def remove_stale_connection_files(
    runtime_dir: str | None = None, log: logging.Logger | None = None
) -> list[str]:
    """Remove private folders of server processes that are gone, and loose copies."""
    base = Path(runtime_dir or jupyter_runtime_dir())
    removed: list[str] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(PRIVATE_DIR_PREFIX) and entry.is_dir():
            pid_text, _, started = entry.name[len(PRIVATE_DIR_PREFIX) :].partition("-")
            if pid_text.isdigit() and _process_alive(int(pid_text), started):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
        elif entry.match(LEGACY_CONNECTION_GLOB):
            entry.unlink(missing_ok=True)  # written by older versions, owner unknown
            removed.append(str(entry))
    if removed:
        (log or _log).info("Removed connection files of servers that are gone: %s", removed)
    return removed


def _process_alive(pid: int, started: str) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started in ("", "0") or process_start_time(pid) in (None, started)


_swept = False
_swept_lock = threading.Lock()


def remove_orphans_once(client: DockerClient, log: logging.Logger | None = None) -> None:
    """Sweep once per process (server start or first plain-client Docker kernel)."""
    global _swept
    with _swept_lock:
        if _swept:
            return
        _swept = True
    remove_stale_connection_files(log=log)
    try:
        remove_orphans(client, log)
    except Exception as err:
        (log or _log).warning("Orphaned kernel containers could not be listed: %s", err)
    remove_orphan_services(client, log)


def remove_orphan_services(client: DockerClient, log: logging.Logger | None = None) -> list[str]:
    """On a Swarm manager: remove kernel services and secrets whose owning server is gone.

    Services and their connection secrets carry the same owner labels as containers.
    Any other engine answers "not a swarm manager", and nothing happens.
    """
    log = log or _log
    me = this_instance()
    removed: list[str] = []
    try:
        services = client.api.services(filters={"label": f"{labels.SERVER_ID}"})
        secrets_ = client.api.secrets(filters={"label": f"{labels.SERVER_ID}"})
    except Exception as err:
        log.debug("No kernel services swept: %s", err)
        return removed
    for service in services:
        spec = service.get("Spec") or {}
        if owner_alive(spec.get("Labels") or {}, me):
            continue
        try:
            client.api.remove_service(service["ID"])
        except Exception as err:
            log.debug("Could not remove orphaned kernel service %s: %s", spec.get("Name"), err)
            continue
        log.info("Removed kernel service %s left by a server that is gone", spec.get("Name"))
        removed.append(str(spec.get("Name")))
    for secret in secrets_:
        spec = secret.get("Spec") or {}
        if owner_alive(spec.get("Labels") or {}, me):
            continue
        for _ in range(20):  # in use until its service's task has stopped
            try:
                client.api.remove_secret(secret["ID"])
                break
            except Exception as err:
                if "in use" not in str(err):
                    break
            time.sleep(0.5)
    return removed


def start_orphan_sweep(
    log: logging.Logger | None = None, docker_host: str | None = None
) -> threading.Thread:
    """Sweep in a background thread so a slow or absent daemon never delays startup."""

    def sweep() -> None:
        try:
            client = docker_client(docker_host)
        except DaemonUnreachable as err:
            (log or _log).debug("No orphan sweep: %s", err)
            remove_stale_connection_files(log=log)
            return
        remove_orphans_once(client, log)

    thread = threading.Thread(target=sweep, name="gpuenv-orphan-sweep", daemon=True)
    thread.start()
    return thread


# Containers started by this process and not yet cleaned up, removed at exit.
_live: dict[str, str | None] = {}
_live_lock = threading.Lock()
_atexit_registered = False


def track(container_id: str, docker_host: str | None = None) -> None:
    """Remember a container to remove at interpreter exit unless cleaned up first."""
    global _atexit_registered
    with _live_lock:
        _live[container_id] = docker_host
        if not _atexit_registered:
            atexit.register(_remove_live_at_exit)
            _atexit_registered = True


def untrack(container_id: str) -> None:
    with _live_lock:
        _live.pop(container_id, None)


def remove_own_containers(
    docker_host: str | None = None, log: logging.Logger | None = None
) -> list[str]:
    """Remove every kernel container labelled with this process as its owner.

    A process about to exit calls it (the kernel launcher) to catch a container whose
    creation was under way when its start was abandoned; returns the names removed.
    """
    try:
        client = docker_client(docker_host)
        owned = [f"{labels.ROLE}=kernel", f"{labels.SERVER_ID}={this_instance().id}"]
        containers = client.containers.list(all=True, filters={"label": owned}, ignore_removed=True)
    except Exception as err:
        (log or _log).warning("Kernel containers of this process could not be listed: %s", err)
        return []
    removed = []
    for container in containers:
        try:
            container.remove(force=True)
        except Exception as err:  # already gone
            (log or _log).debug("Could not remove kernel container %s: %s", container.name, err)
            continue
        untrack(str(container.id))
        removed.append(str(container.name))
    return removed


def _remove_live_at_exit() -> None:
    with _live_lock:
        remaining = dict(_live)
        _live.clear()
    for container_id, host in remaining.items():
        try:
            docker_client(host).api.remove_container(container_id, force=True)
        except DaemonUnreachable as err:
            _log.warning("Kernel container %s could not be removed at exit: %s", container_id, err)
        except Exception:
            pass  # already gone


def container_user_label(hub_user: str) -> str:
    """The USER label: the Hub user name, else this process's login name."""
    if hub_user:
        return hub_user
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())
