"""A kernel as a container of the local Docker engine.

The container runs the image's python with ipykernel on the host network, binding the
127.0.0.1 ports of the connection file, with docker-init as PID 1 (``docker kill
--signal SIGINT`` reaches the kernel as a KeyboardInterrupt). It is created only from
the gated arguments (preparation.py), labelled with the kernel and the server instance
(orphans.py removes it if its server dies) and removed on shutdown and on every restart:
a restart is a new container. Docker calls run in threads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pathlib
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

from docker import DockerClient
from docker.errors import APIError, NotFound
from docker.models.containers import Container

from ....docker import labels
from ....docker.client import DaemonUnreachable
from ....docker.runs import explanation
from ....errors import PolicyViolation
from ... import kernel_history
from ...kernel_errors import KernelDisconnected, KernelStartFailed, SignalNotDelivered
from .. import orphans
from ..readiness import container_state, log_tail, wait_until_ready
from ..runtime import KernelRuntime, KernelStart, RuntimeContext, record_text
from .container_watch import UNREACHABLE, mark_reachable, mark_unreachable, read_container_exit
from .mount_check import changed_mount


class EngineRuntime(KernelRuntime):
    """One kernel container on this server's Docker engine."""

    kind = "engine"

    def __init__(self, context: RuntimeContext) -> None:
        super().__init__(context)
        self.container_id: str | None = None
        self.container_name: str | None = None
        self.image: str | None = None
        self.connection_copy: str | None = None
        self._exit_recorded = False

    async def prepare(self, start: KernelStart) -> None:
        await start.resolve_container()

    async def create(self, start: KernelStart) -> dict[str, Any]:
        preparation, progress = start.preparation, start.progress
        self._exit_recorded = False
        client, image_id, python = await preparation.docker_and_image(self.context.client, progress)
        self.image = preparation.image
        try:
            request = await asyncio.to_thread(
                preparation.container_request,
                client,
                image_id,
                python,
                start.cwd,
                start.server_env,
            )
            self.connection_copy = preparation.connection_copy
            args = preparation.checked_arguments(request)
            started = time.monotonic()
            progress.step("container", f"Starting a container of {self.image}")
            container = await _created(client, args, request.kernel_id, self.log)
        except BaseException:
            preparation.discard_connection_copy()  # made, perhaps, before it was ours
            self.connection_copy = None
            raise
        self.container_id, self.container_name = str(container.id), str(container.name)
        if self.context.owned:
            orphans.track(self.container_id, self.context.docker_host)
        try:
            await asyncio.to_thread(container.start)
            changed = await asyncio.to_thread(changed_mount, container)
            if changed is not None:
                raise PolicyViolation(
                    f"The folder to mount at {changed} changed between its check and "
                    "Docker's mount (a part of its path was replaced): the kernel was "
                    "removed before it was handed out. Start it again."
                )
            progress.step("kernel", "Waiting for the kernel to answer", waiting_for="kernel")
            info = dict(start.manager.get_connection_info())
            await wait_until_ready(
                client,
                container,
                info,
                preparation.owner.gpuenv_config.kernel_start_timeout,
                self.image or "",
            )
        except BaseException as err:
            await self._discard(client)
            if isinstance(err, APIError):
                raise KernelStartFailed(
                    f"Docker could not start the kernel container: {explanation(err)}"
                ) from err
            raise
        self.log.info(
            "Kernel %s: container %s of %s ready in %.2f s",
            self.context.kernel_id,
            self.container_name,
            self.image,
            time.monotonic() - started,
        )
        return info

    @property
    def exists(self) -> bool:
        return self.container_id is not None

    async def poll(self) -> int | None:
        if self.container_id is None:
            return 0
        try:
            client = self.context.client()
            state = await asyncio.to_thread(container_state, client, self.container_id)
        except NotFound:
            self._docker_back()
            self._record_exit(kernel_history.vanished_exit())
            return -1
        except APIError:
            return None  # cannot tell; a daemon hiccup must not trigger a restart
        except UNREACHABLE as err:
            self._docker_lost(err)
            return None  # the container may well run on: wait for Docker, then see
        self._docker_back()
        if state.get("Running"):
            return None
        if not getattr(self.context.manager, "shutting_down", False):
            await self._capture_exit(client, requested=False)  # a death, not a shutdown
        return int(state.get("ExitCode") or 0)

    async def signal(self, signum: int) -> None:
        """``docker kill --signal``: docker-init passes it on to the kernel process."""
        if self.container_id is None:
            return
        name = signal.Signals(signum).name
        try:
            await asyncio.to_thread(self.context.client().api.kill, self.container_id, name)
        except NotFound:
            pass
        except APIError as err:
            if err.status_code != 409:  # 409: not running any more
                raise SignalNotDelivered(
                    f"The kernel could not be signalled ({name}): {explanation(err)}"
                ) from err
        except UNREACHABLE as err:
            message = self._docker_lost(err)
            raise KernelDisconnected(
                f"The kernel is disconnected from Docker: {message} The kernel was not "
                f"signalled ({name}); it is reconnected by itself when Docker answers again."
            ) from err

    async def remove(self, requested: bool = True) -> None:
        try:
            client = self.context.client()
        except DaemonUnreachable as err:
            self.log.warning(
                "Kernel %s: container %s not removed: %s",
                self.context.kernel_id,
                self.container_name,
                err,
            )
            self._remove_connection_copy()
            return
        await self._capture_exit(client, requested=requested)
        await self._discard(client)

    async def logs(self) -> str:
        if self.container_id is None:
            return ""
        try:
            client = self.context.client()
            container = await asyncio.to_thread(client.containers.get, self.container_id)
        except NotFound:
            return ""
        return await asyncio.to_thread(log_tail, container)

    def describe(self) -> dict[str, Any]:
        return {"id": self.container_id, "name": self.container_name, "image": self.image}

    def keep_after_exit(self) -> None:
        if self.container_id is not None:
            orphans.untrack(self.container_id)

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "image": self.image,
            "connection_copy": self.connection_copy,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], context: RuntimeContext) -> EngineRuntime:
        runtime = cls(context)
        runtime.container_id = record_text(record, "container_id") or None
        runtime.container_name = record_text(record, "container_name") or None
        runtime.image = record_text(record, "image") or None
        runtime.connection_copy = record_text(record, "connection_copy") or None
        if runtime.container_id and context.owned:
            orphans.track(runtime.container_id, context.docker_host)
        return runtime

    # -- what happened ---------------------------------------------------------------

    async def _discard(self, client: DockerClient) -> None:
        container_id = self.container_id
        if container_id is not None:
            try:
                await asyncio.to_thread(client.api.remove_container, container_id, force=True)
            except NotFound:
                orphans.untrack(container_id)
            except APIError as err:
                self.log.warning(
                    "Kernel %s: could not remove container %s: %s",
                    self.context.kernel_id,
                    self.container_name,
                    explanation(err),
                )
            except UNREACHABLE as err:  # left to this process's exit or the next sweep
                self.log.warning(
                    "Kernel %s: container %s not removed: %s",
                    self.context.kernel_id,
                    self.container_name,
                    err,
                )
            else:
                orphans.untrack(container_id)
        self.container_id = None
        self._remove_connection_copy()

    def _remove_connection_copy(self) -> None:
        if self.connection_copy:
            pathlib.Path(self.connection_copy).unlink(missing_ok=True)
            self.connection_copy = None

    async def _capture_exit(self, client: DockerClient, requested: bool) -> None:
        """Keep why the container ended (state, OOM kill, last log lines) before removal."""
        if self.container_id is None or self._exit_recorded or not self.context.owned:
            return
        exit_ = await read_container_exit(client, self.container_id, requested)
        if exit_ is not None:
            self._record_exit(exit_)

    def _record_exit(self, exit_: kernel_history.KernelExit) -> None:
        if self._exit_recorded or not self.context.owned:
            return
        self._exit_recorded = True
        kernel_history.history_of(self.context.kernel_id).last_exit = exit_
        if not exit_.requested:
            self.log.warning(
                "Kernel %s: container %s ended: %s",
                self.context.kernel_id,
                self.container_name,
                exit_.reason,
            )

    def _docker_lost(self, err: BaseException) -> str:
        context = self.context
        return mark_unreachable(
            context.kernel_id, err, context.docker_host, context.manager, self.log
        )

    def _docker_back(self) -> None:
        mark_reachable(self.context.kernel_id, self.context.manager, self.log, self.container_name)


async def _created(
    client: DockerClient, args: dict[str, Any], kernel_id: str, log: logging.Logger
) -> Container:
    """``_create`` in a thread. A start cancelled meanwhile (its client gone, the server
    stopping) cannot stop the thread: what it then creates is removed, not left behind."""
    creating = asyncio.ensure_future(asyncio.to_thread(_create, client, args, kernel_id))
    try:
        return await asyncio.shield(creating)
    except asyncio.CancelledError:
        creating.add_done_callback(lambda done: _remove_unwanted(client, done, log))
        raise


def _remove_unwanted(
    client: DockerClient, done: asyncio.Future[Container], log: logging.Logger
) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    container_id = str(done.result().id)
    remove = functools.partial(client.api.remove_container, container_id, force=True)
    removing = asyncio.get_running_loop().run_in_executor(None, remove)

    def removed(result: asyncio.Future[Any]) -> None:
        if result.exception() is not None:
            log.warning("Container %s not removed: %s", container_id, result.exception())

    removing.add_done_callback(removed)


def _create(client: DockerClient, args: dict[str, Any], kernel_id: str) -> Container:
    """Docker's create of the gated arguments; a leftover of this kernel is replaced."""
    try:
        return client.containers.create(**args)
    except APIError as err:
        if err.status_code != 409:
            raise _create_failed(err) from err
    # Name taken: a leftover of this kernel is replaced, anything else keeps its name.
    try:
        other = client.containers.get(args["name"])
        if (other.labels or {}).get(labels.KERNEL_ID) == kernel_id:
            other.remove(force=True)
        else:
            args["name"] = f"{args['name']}-{secrets.token_hex(2)}"
    except NotFound:
        pass
    try:
        return client.containers.create(**args)
    except APIError as err:
        raise _create_failed(err) from err


def _create_failed(err: APIError) -> KernelStartFailed:
    """Docker's refusal, and why when a folder this process made is not where Docker looks."""
    text = explanation(err)
    message = f"Docker could not create the kernel container: {text}"
    private = os.path.dirname(orphans.private_connection_dir())
    if "bind source path does not exist" in text and private in text:
        message += (
            f" The Docker engine does not see {private}, where this process keeps the kernels'"
            " connection files: this process runs in a mount namespace of its own (systemd's"
            " PrivateTmp or ProtectHome, unshare), or the engine runs on another host. Point"
            " JUPYTER_RUNTIME_DIR at a folder both see."
        )
    return KernelStartFailed(message)


def owned_containers(
    client: DockerClient,
    label_filters: list[str],
    context_for: Callable[[str], RuntimeContext],
    log: logging.Logger,
) -> list[tuple[dict[str, str], EngineRuntime, list[str]]]:
    """The running kernel containers matching ``label_filters``, each with its labels, a
    runtime attached to it (``context_for(kernel_id)`` gives its context) and the GPUs it
    was given; ended ones are removed."""
    found = []
    containers = client.containers.list(
        all=True, filters={"label": label_filters}, ignore_removed=True
    )
    for container in containers:
        marks = dict(container.labels or {})
        kernel_id = marks.get(labels.KERNEL_ID)
        if not kernel_id:
            continue
        if container.status not in ("running", "created"):
            try:  # the kernel ended while its owner was away
                container.remove(force=True)
            except APIError as err:
                log.debug("Container %s not removed: %s", container.name, err)
            continue
        runtime = EngineRuntime(context_for(kernel_id))
        runtime.container_id, runtime.container_name = str(container.id), str(container.name)
        runtime.image = str((container.attrs.get("Config") or {}).get("Image") or "")
        found.append((marks, runtime, device_ids(container.attrs)))
    return found


def device_ids(container_attrs: dict[str, Any]) -> list[str]:
    """The GPU ids a container's device requests name."""
    requests = ((container_attrs.get("HostConfig") or {}).get("DeviceRequests")) or []
    return [str(i) for r in requests for i in (r.get("DeviceIDs") or [])]
