"""A throwaway multi-node Docker Swarm on one machine, for cluster-mode tests.

Each node is a ``dockerd`` of its own (own data-root, exec-root, pidfile and unix socket)
started inside a network namespace made here, with its own hostname (UTS namespace). The
namespaces hang off a bridge in the root namespace by veth pairs::

    root namespace  bridge gpuenv-sw<slot>  10.213.<100+slot>.1/24   (the tests' side)
    node n1         netns gpuenv-sw<slot>-n1, eth0 10.213.<100+slot>.2  (swarm manager)
    node n2         netns gpuenv-sw<slot>-n2, eth0 10.213.<100+slot>.3  (worker)
    ...

The namespaces have no default route: nodes reach each other and the root namespace's
bridge address, nothing else (a registry pull fails at once instead of timing out).

Fake GPUs are Swarm generic resources (``node-generic-resources`` in each node's
daemon.json); a task reserving some gets ``DOCKER_RESOURCE_NVIDIA-GPU=<ids>`` in its
environment. Images cannot be pulled: ``start_swarm_cluster(images=...)`` seeds every
node's data-root from one loaded once and cached on disk (fast), ``SwarmCluster.load_image``
copies more later with ``docker save`` / ``docker load`` (slow: seconds per 100 MB per node).
Node state lives on a tmpfs per cluster.

Never start a ``dockerd`` in the root network namespace: when a second one stops it deletes
``docker0`` and later image builds fail. ``nsenter --net`` is used rather than
``ip netns exec``, which remounts /sys and leaves dockerd without its devices cgroup.

Several clusters may run at once (parallel sessions, or two layouts in one session): each
holds a *slot* (an ``flock`` kept for the cluster's life) that fixes its names and subnet.
A slot whose lock is free but whose names still exist is a crashed run's leftovers, and is
swept before use. ``python -m tests.support.swarm sweep`` sweeps every free slot by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.services import Service
from docker.types import Resources, RestartPolicy

from .images import LOG_DIR, WORK_DIR
from .locks import file_lock

PREFIX = "gpuenv-sw"
GPU_KIND = "NVIDIA-GPU"
# The variable Swarm sets in a task holding generic resources of GPU_KIND (a dash in the
# name: shells drop it, read it from Python).
GPU_ENV = f"DOCKER_RESOURCE_{GPU_KIND}"
# c.GpuEnv settings every kernel test on these nodes needs: their engine is the host's
# (20.10 here), older than 25.0, so a kernel service cannot carry no-new-privileges and is
# refused unless the admin allows it; on a newer engine the setting changes nothing.
OLD_ENGINE_OPT_OUT = {"swarm_allow_old_engine": True}
# Every service run_service makes carries this label (value: the slot).
HARNESS_LABEL = "org.jupyter.gpuenv.test-swarm"
NODE_LABEL = "org.jupyter.gpuenv.test-node"

STATE_ROOT = WORK_DIR / "swarm"  # slot locks; <slot>/: data-roots, daemon.json (tmpfs)
IMAGE_CACHE = WORK_DIR / "swarm-images"  # `docker save` archives, by tag and image id
# Node data-roots live on a tmpfs: loading images is much faster than on disk, and teardown
# is an unmount. GPUENV_TEST_SWARM_TMPFS=0 keeps them on disk (machines short of memory).
USE_TMPFS = os.environ.get("GPUENV_TEST_SWARM_TMPFS", "1") != "0"
# exec-roots and sockets: short paths (unix socket paths are limited to 107 bytes).
RUN_ROOT = Path("/run") / PREFIX
CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_SLOTS = 8
SUBNET_THIRD_OCTET = 100  # slot s uses 10.213.(100 + s).0/24
CLIENT_TIMEOUT = 120
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
REQUIRED_COMMANDS = {"ip": "iproute2", "iptables": "iptables", "nsenter": "util-linux"}
APT_LOG = LOG_DIR / "swarm-apt.log"

# Task states after which a task runs no more (its resources are free again).
TASK_ENDED = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})

# One line per closed cluster (see SwarmCluster.summary), for the pytest summary.
REPORT: list[str] = []

TaskPredicate = Callable[[dict[str, Any]], bool]


class SwarmUnavailable(RuntimeError):
    """This machine cannot run a Swarm of network namespaces (not root, missing tools)."""


class SwarmError(RuntimeError):
    """Bringing the cluster up (or a wait on it) failed; the message has the nodes' logs."""


# ---------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class NodeSpec:
    """One node: its name (short: it is part of interface names), the generic resources it
    offers by kind (``{"NVIDIA-GPU": ("GPU-a",)}``), and Swarm node labels to set on it."""

    name: str
    generic_resources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def gpu_layout(*gpus_per_node: int, kind: str = GPU_KIND) -> list[NodeSpec]:
    """Nodes n1, n2, ... with the given number of fake GPUs each, ids ``GPU-swarm-n1-0``.

    ``gpu_layout(2, 1, 1)`` is the default cluster: n1 (the manager) with two GPUs, n2 and
    n3 with one each.
    """
    if not gpus_per_node:
        raise ValueError("a cluster needs at least one node")
    return [
        NodeSpec(
            name=f"n{index}",
            generic_resources={kind: tuple(f"GPU-swarm-n{index}-{gpu}" for gpu in range(count))}
            if count
            else {},
        )
        for index, count in enumerate(gpus_per_node, start=1)
    ]


DEFAULT_LAYOUT = (2, 1, 1)


# ---------------------------------------------------------------------------- names


@dataclass(frozen=True)
class _Slot:
    """Names, addresses and folders of slot ``number``; the same for a crashed run."""

    number: int

    @property
    def tag(self) -> str:
        return f"{PREFIX}{self.number}"

    @property
    def bridge(self) -> str:
        return self.tag

    @property
    def subnet_prefix(self) -> str:
        return f"10.213.{SUBNET_THIRD_OCTET + self.number}"

    @property
    def gateway_ip(self) -> str:
        return f"{self.subnet_prefix}.1"

    def node_ip(self, index: int) -> str:
        return f"{self.subnet_prefix}.{index + 2}"

    def netns(self, node: str) -> str:
        return f"{self.tag}-{node}"

    def veth(self, node: str) -> str:
        name = f"{self.tag}{node}"
        if len(name) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 characters")
        return name

    def hostname(self, node: str) -> str:
        return f"{self.tag}-{node}"

    def cgroup_parent(self, node: str) -> str:
        return f"{self.tag}-{node}"

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / str(self.number)

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / str(self.number)

    @property
    def lock_path(self) -> Path:
        return STATE_ROOT / f"slot-{self.number}.lock"

    def log_path(self, node: str) -> Path:
        return LOG_DIR / f"swarm-{self.number}-{node}-dockerd.log"

    def iptables_rule(self) -> list[str]:
        return ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]


# ---------------------------------------------------------------------------- the cluster


@dataclass
class SwarmNode:
    """One node: its dockerd (in netns ``netns``) and how to reach it."""

    name: str
    ip: str
    socket: Path
    client: docker.DockerClient
    generic_resources: dict[str, tuple[str, ...]]
    hostname: str
    netns: str
    labels: dict[str, str]  # Swarm node labels (NODE_LABEL: name, and the NodeSpec's)
    log_path: Path
    data_root: Path
    exec_root: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    @property
    def url(self) -> str:
        """DOCKER_HOST for this node's engine."""
        return f"unix://{self.socket}"

    @property
    def gpus(self) -> tuple[str, ...]:
        return self.generic_resources.get(GPU_KIND, ())

    @property
    def constraint(self) -> str:
        """A placement constraint that pins a service to this node."""
        return f"node.id=={self.node_id}"


@dataclass
class SwarmCluster:
    """A running Swarm; ``nodes[0]`` is the (only) manager. ``close()`` removes all of it."""

    nodes: list[SwarmNode]
    host_client: docker.DockerClient
    slot: int
    bridge: str
    gateway_ip: str  # the root namespace's address on the bridge (the server side)
    state_dir: Path  # data-roots and daemon.json files, removed by close()
    _slot_lock: IO[str] | None = field(default=None, repr=False)
    _loaded: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _counter: int = field(default=0, repr=False)
    _closed: bool = field(default=False, repr=False)
    timings: dict[str, float] = field(default_factory=dict, repr=False)  # phase -> seconds
    up_seconds: float | None = None  # None: bringing it up failed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- access

    @property
    def manager_node(self) -> SwarmNode:
        return self.nodes[0]

    @property
    def manager(self) -> docker.DockerClient:
        return self.manager_node.client

    @property
    def manager_url(self) -> str:
        """DOCKER_HOST for the manager (what the package under test talks to)."""
        return self.manager_node.url

    def node(self, which: SwarmNode | str) -> SwarmNode:
        """A node by name (``"n2"``), hostname, Swarm node id, or the node itself."""
        if isinstance(which, SwarmNode):
            return which
        for node in self.nodes:
            if which in (node.name, node.hostname, node.node_id):
                return node
        raise KeyError(f"no node {which!r} in {[n.name for n in self.nodes]}")

    @property
    def gpus(self) -> dict[str, str]:
        """Every fake GPU id -> the name of the node that has it."""
        return {gpu: node.name for node in self.nodes for gpu in node.gpus}

    # -- images

    def load_image(self, tag: str, nodes: Iterable[SwarmNode | str] | None = None) -> None:
        """Copy image ``tag`` from the host's engine into ``nodes`` (default: all).

        ``docker save`` once (the archive is kept in IMAGE_CACHE, by image id, for later
        sessions), then ``docker load`` into the nodes in parallel. A node that already has
        this image (same id) is skipped, so calling this in every test costs nothing.
        """
        image = self.host_client.images.get(tag)
        targets = [self.node(n) for n in nodes] if nodes is not None else list(self.nodes)
        targets = [n for n in targets if not self._has_image(n, tag, image.id)]
        if not targets:
            return
        archive = _saved_image(self.host_client, tag, image.id)

        def load(node: SwarmNode) -> None:
            with open(archive, "rb") as data:
                node.client.images.load(data)
            loaded = node.client.images.get(tag)
            if loaded.id != image.id:
                raise SwarmError(f"{node.name}: loaded {tag} as {loaded.id}, not {image.id}")
            with self._lock:
                self._loaded.setdefault(node.name, set()).add(f"{tag}@{image.id}")

        _in_parallel(load, targets)

    def _has_image(self, node: SwarmNode, tag: str, image_id: str) -> bool:
        if f"{tag}@{image_id}" in self._loaded.get(node.name, set()):
            return True
        try:
            return node.client.images.get(tag).id == image_id
        except ImageNotFound:
            return False

    # -- node availability

    def drain(self, node: SwarmNode | str, timeout: float = 60.0) -> None:
        """Set ``node`` to drain and wait until it runs no tasks."""
        target = self.node(node)
        self._set_availability(target, "drain")
        self.wait_for(
            lambda: not _running_containers(target),
            timeout,
            f"{target.name} to stop its tasks after drain",
        )

    def activate(self, node: SwarmNode | str) -> None:
        self._set_availability(self.node(node), "active")

    def _set_availability(self, node: SwarmNode, availability: str) -> None:
        swarm_node = self.manager.nodes.get(node.node_id)
        spec = dict(swarm_node.attrs["Spec"])
        if spec.get("Availability") == availability:
            return
        spec["Availability"] = availability
        swarm_node.update(spec)

    def availability(self, node: SwarmNode | str) -> str:
        return self.manager.nodes.get(self.node(node).node_id).attrs["Spec"]["Availability"]

    # -- services

    def run_service(
        self,
        image: str,
        command: Sequence[str] | None = None,
        *,
        name: str | None = None,
        gpus: int = 0,
        node: SwarmNode | str | None = None,
        host_network: bool = True,
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        restart: str = "none",
        **kwargs: Any,
    ) -> Service:
        """Create a service (one replica) of an image the nodes have (see ``load_image``).

        ``gpus`` reserves that many ``NVIDIA-GPU`` generic resources; ``node`` pins it to
        a node; ``host_network`` runs it in its node's network namespace, reachable from
        the tests at ``node.ip``. Tasks are not restarted (``restart="none"``), so a task's
        state says what happened. Other keyword arguments go to ``services.create``.
        """
        with self._lock:
            self._counter += 1
            default_name = f"{PREFIX}{self.slot}-svc{self._counter}"
        constraints = list(kwargs.pop("constraints", []))
        if node is not None:
            constraints.append(self.node(node).constraint)
        if gpus:
            kwargs["resources"] = Resources(generic_resources={GPU_KIND: gpus})
        if host_network:
            kwargs["networks"] = ["host"]
        kwargs.setdefault("stop_grace_period", 1_000_000_000)  # ns
        return self.manager.services.create(
            image,
            list(command) if command is not None else None,
            name=name or default_name,
            env=[f"{key}={value}" for key, value in (env or {}).items()],
            labels={HARNESS_LABEL: str(self.slot), **(labels or {})},
            constraints=constraints,
            restart_policy=RestartPolicy(condition=restart),
            **kwargs,
        )

    def service(self, which: Service | str) -> Service:
        return which if isinstance(which, Service) else self.manager.services.get(which)

    def tasks(self, service: Service | str) -> list[dict[str, Any]]:
        """The service's tasks, oldest first."""
        tasks = self.manager.api.tasks(filters={"service": self.service(service).id})
        return sorted(tasks, key=lambda task: task["CreatedAt"])

    def latest_task(self, service: Service | str) -> dict[str, Any] | None:
        tasks = self.tasks(service)
        return tasks[-1] if tasks else None

    def wait_for_task(
        self,
        service: Service | str,
        state: str | TaskPredicate = "running",
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Wait until the service's newest task is in ``state`` (or satisfies it); return it.

        A task that ends (failed, rejected, ...) while waiting for ``running`` fails at
        once, with its error.
        """
        service = self.service(service)
        if callable(state):
            predicate, what = state, f"a task of {service.name} to match {state!r}"
        else:
            predicate, what = (lambda t: t["Status"]["State"] == state), f"{service.name} {state}"
        found: dict[str, Any] = {}

        def check() -> bool:
            task = self.latest_task(service)
            if task is None:
                return False
            found["task"] = task
            if predicate(task):
                return True
            if state == "running" and task["Status"]["State"] in TASK_ENDED:
                raise SwarmError(
                    f"{service.name}: task ended instead of running: {describe_task(task)}\n"
                    f"{self.diagnostics()}"
                )
            return False

        self.wait_for(check, timeout, what, lambda: describe_task(found.get("task")))
        return found["task"]

    def service_logs(self, service: Service | str) -> str:
        chunks = self.service(service).logs(stdout=True, stderr=True)
        return b"".join(chunks).decode(errors="replace")

    def wait_for_log(self, service: Service | str, text: str, timeout: float = 60.0) -> str:
        """Wait until the service's logs contain ``text``; return all of them."""
        found: dict[str, str] = {"logs": ""}

        def check() -> bool:
            found["logs"] = self.service_logs(service)
            return text in found["logs"]

        self.wait_for(check, timeout, f"{text!r} in the logs", lambda: found["logs"][-2000:])
        return found["logs"]

    def cleanup_services(self, label: str | dict[str, str] | None = None) -> list[str]:
        """Remove services (default: all; else those with the label, ``"k"``, ``"k=v"``
        or ``{"k": "v"}``) and kill their containers right away. Returns their names."""
        filters = None
        if isinstance(label, dict):
            filters = {"label": [f"{key}={value}" for key, value in label.items()]}
        elif label:
            filters = {"label": label}
        services = self.manager.services.list(filters=filters)
        ids = {service.id for service in services}
        for service in services:
            with contextlib.suppress(NotFound):
                service.remove()
        if ids:
            _in_parallel(lambda node: _kill_service_containers(node, ids), self.nodes)
            # The scheduler frees a task's resources once the task has stopped running.
            self.wait_for(
                lambda: (
                    not any(
                        t["ServiceID"] in ids and t["Status"]["State"] not in TASK_ENDED
                        for t in self.manager.api.tasks()
                    )
                ),
                30,
                "the removed services' tasks to stop",
            )
        return [service.name for service in services]

    # -- waiting and diagnostics

    def wait_for(
        self,
        condition: Callable[[], Any],
        timeout: float,
        what: str,
        detail: Callable[[], str] | None = None,
        interval: float = 0.25,
    ) -> Any:
        """Poll ``condition`` until truthy; on timeout raise SwarmError with the node logs."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                extra = f"\nlast seen: {detail()}" if detail else ""
                raise SwarmError(
                    f"timed out after {timeout:.0f} s waiting for {what}{extra}\n"
                    f"{self.diagnostics()}"
                )
            time.sleep(interval)

    def diagnostics(self, lines: int = 15) -> str:
        """The tails of each node's dockerd log (for failure messages)."""
        return _log_tails(self.nodes, lines)

    # -- teardown

    def close(self) -> None:
        """Remove services, leave the swarm, stop the daemons, delete every trace."""
        if self._closed:
            return
        self._closed = True
        started = time.monotonic()
        answering = [node for node in self.nodes if node.client is not None]
        try:
            # Best effort (a daemon may be dead: requests' errors are no DockerException).
            if answering and answering[0] is self.manager_node:
                with contextlib.suppress(Exception):
                    self.cleanup_services()

            def leave(node: SwarmNode) -> None:
                node.client.swarm.leave(force=True)

            _in_parallel(leave, answering[1:], swallow=True)  # workers, then the manager
            _in_parallel(leave, answering[:1], swallow=True)
            _in_parallel(_stop_dockerd, self.nodes, swallow=True)
            for node in answering:
                with contextlib.suppress(Exception):
                    node.client.close()
        finally:
            _sweep(_Slot(self.slot))
            if self._slot_lock is not None:
                self._slot_lock.close()  # releases the flock
                self._slot_lock = None
            self.timings["close"] = time.monotonic() - started
            REPORT.append(self.summary())

    def summary(self) -> str:
        """One line: the layout and how long bringing it up (by phase) and closing took."""
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items() if k != "close")
        layout = " ".join(f"{n.name}({len(n.gpus)} GPU)" for n in self.nodes)
        if self.up_seconds is None:
            text = f"swarm slot {self.slot} [{layout}]: failed to come up ({phases})"
        else:
            text = f"swarm slot {self.slot} [{layout}]: up in {self.up_seconds:.1f} s ({phases})"
        if "close" in self.timings:
            text += f", closed in {self.timings['close']:.1f} s"
        return text

    def __enter__(self) -> SwarmCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_task(task: dict[str, Any] | None) -> str:
    """One line: state, message and error of a task (what ``docker service ps`` shows)."""
    if task is None:
        return "(no task)"
    status = task.get("Status", {})
    parts = [status.get("State", "?"), repr(status.get("Message", ""))]
    if status.get("Err"):
        parts.append(f"error: {status['Err']}")
    if task.get("NodeID"):
        parts.append(f"node {task['NodeID'][:12]}")
    return " ".join(parts)


# ---------------------------------------------------------------------------- bring-up


def check_prerequisites(install: bool = True) -> None:
    """Raise SwarmUnavailable when this machine cannot run the harness at all."""
    if sys.platform != "linux":
        raise SwarmUnavailable("network namespaces need Linux")
    if os.geteuid() != 0:
        raise SwarmUnavailable("network namespaces, veths and extra dockerds need root")
    if not shutil.which("dockerd"):
        raise SwarmUnavailable("dockerd is not installed")
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing and install and shutil.which("apt-get"):
        _apt_install(missing)
        missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        raise SwarmUnavailable(f"missing tools from Debian packages {', '.join(missing)}")


def _apt_install(packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with file_lock("apt"), open(APT_LOG, "ab") as log:
        for command in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        ):
            result = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=900, check=False
            )
            if result.returncode != 0:
                raise SwarmUnavailable(
                    f"{' '.join(command)} failed ({result.returncode}); see {APT_LOG}"
                )


def start_swarm_cluster(
    layout: Sequence[NodeSpec] | None = None,
    host_client: docker.DockerClient | None = None,
    images: Sequence[str] = (),
) -> SwarmCluster:
    """Bring up a Swarm with one node per ``NodeSpec`` (default ``gpu_layout(2, 1, 1)``).

    ``images`` (tags in the host's engine) are on every node from the start: the nodes'
    data-roots are seeded from a cached one holding them (see ``_seed_data_roots``), much
    faster than ``docker load`` into each node. Raises SwarmUnavailable when the machine
    cannot (see ``check_prerequisites``) and SwarmError when bringing it up fails; either
    way nothing is left behind.
    """
    layout = list(layout) if layout is not None else gpu_layout(*DEFAULT_LAYOUT)
    if not layout or len({spec.name for spec in layout}) != len(layout):
        raise ValueError(f"node names must be unique and non-empty: {layout}")
    if len(layout) > 200:
        raise ValueError("at most 200 nodes fit in a /24")
    for spec in layout:
        _Slot(0).veth(spec.name)  # fails early on names too long for an interface
    check_prerequisites()
    host_client = host_client or docker.from_env(timeout=CLIENT_TIMEOUT)
    started = time.monotonic()
    slot, slot_lock = _acquire_slot()
    names = _Slot(slot)
    cluster = SwarmCluster(
        nodes=[],
        host_client=host_client,
        slot=slot,
        bridge=names.bridge,
        gateway_ip=names.gateway_ip,
        state_dir=names.state_dir,
        _slot_lock=slot_lock,
    )
    phase = _Phases(cluster.timings)
    try:
        with phase("network"):
            _setup_state_dir(names)
            _setup_network(names, layout)
        if images:
            data_roots = [names.state_dir / spec.name / "data" for spec in layout]
            netns = names.netns(layout[0].name)
            _seed_data_roots(host_client, images, names, netns, data_roots, phase)
        with phase("daemons"):
            for index, spec in enumerate(layout):
                cluster.nodes.append(_start_node(names, index, spec))
            _in_parallel(_wait_for_engine, cluster.nodes)
        with phase("swarm"):
            _form_swarm(cluster)
        for tag in images:  # a no-op unless the seeded data-roots lack them
            cluster.load_image(tag)
        cluster.up_seconds = time.monotonic() - started
    except BaseException as exc:
        message = str(exc)
        if cluster.nodes and "dockerd log" not in message:
            message += f"\n{_log_tails(cluster.nodes)}"
        try:
            cluster.close()
        except Exception as cleanup_error:  # keep the first error, mention the second
            message += f"\n(cleanup after the failure failed too: {cleanup_error!r})"
        if isinstance(exc, SwarmUnavailable) or not isinstance(exc, Exception):
            raise
        raise SwarmError(f"bringing up the swarm failed: {message}") from exc
    return cluster


def _acquire_slot() -> tuple[int, IO[str]]:
    """Lock the first free slot, sweeping it and every other unlocked slot's leftovers."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    chosen: tuple[int, IO[str]] | None = None
    for number in range(MAX_SLOTS):
        slot = _Slot(number)
        handle = open(slot.lock_path, "a+")  # kept open (locked) while the cluster lives
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()  # a live cluster of another session or of this one
            continue
        _sweep(slot)
        if chosen is None and not _subnet_taken(slot):
            chosen = (number, handle)
        else:
            handle.close()
    if chosen is None:
        raise SwarmError(f"all {MAX_SLOTS} swarm slots are busy (lock files in {STATE_ROOT})")
    return chosen


def _subnet_taken(slot: _Slot) -> bool:
    routes = _run(["ip", "-4", "route", "show"], check=False).stdout
    return any(line.startswith(slot.subnet_prefix + ".") for line in routes.splitlines())


def _setup_state_dir(slot: _Slot) -> None:
    slot.state_dir.mkdir(parents=True, exist_ok=True)
    if USE_TMPFS:
        _run(["mount", "-t", "tmpfs", "-o", "mode=0700", slot.tag, str(slot.state_dir)])


def _setup_network(slot: _Slot, layout: Sequence[NodeSpec]) -> None:
    _run(["ip", "link", "add", slot.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", f"{slot.gateway_ip}/24", "dev", slot.bridge])
    _run(["ip", "link", "set", slot.bridge, "up"])
    # Docker's FORWARD policy drops bridged traffic (br_netfilter); let node<->node through.
    _run(["iptables", "-I", *slot.iptables_rule()])
    for index, spec in enumerate(layout):
        netns, veth = slot.netns(spec.name), slot.veth(spec.name)
        _run(["ip", "netns", "add", netns])
        _run(["ip", "-n", netns, "link", "set", "lo", "up"])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
        _run(["ip", "link", "set", veth, "master", slot.bridge, "up"])
        _run(["ip", "-n", netns, "addr", "add", f"{slot.node_ip(index)}/24", "dev", "eth0"])
        _run(["ip", "-n", netns, "link", "set", "eth0", "up"])


def _start_node(
    slot: _Slot, index: int, spec: NodeSpec, netns: str | None = None, data_root: Path | None = None
) -> SwarmNode:
    """Start node ``spec``'s dockerd (in its netns, or in ``netns``) without waiting."""
    run_dir = slot.run_dir / spec.name
    state_dir = slot.state_dir / spec.name
    data_root, exec_root = data_root or state_dir / "data", run_dir / "exec"
    state_dir.mkdir(parents=True, exist_ok=True)
    for folder in (data_root, exec_root):
        folder.mkdir(parents=True, exist_ok=True)
    resources = [f"{kind}={rid}" for kind, ids in spec.generic_resources.items() for rid in ids]
    config = state_dir / "daemon.json"
    config.write_text(
        json.dumps(
            {
                "node-generic-resources": resources,
                "labels": [f"{NODE_LABEL}={spec.name}"],
            },
            indent=2,
        )
    )
    socket = run_dir / "docker.sock"
    hostname = slot.hostname(spec.name)
    netns = netns or slot.netns(spec.name)
    dockerd = [
        "dockerd",
        f"--config-file={config}",
        f"--data-root={data_root}",
        f"--exec-root={exec_root}",
        f"--pidfile={run_dir / 'dockerd.pid'}",
        f"--host=unix://{socket}",
        "--bridge=none",
        f"--cgroup-parent=/{slot.cgroup_parent(spec.name)}",
    ]
    # nsenter (not `ip netns exec`): keeps the host's /sys mounts. unshare --uts gives the
    # node a hostname of its own (what `docker node ls` shows); each step execs the next,
    # so the Popen pid is dockerd's.
    command = [
        "nsenter",
        f"--net=/run/netns/{netns}",
        "unshare",
        "--uts",
        "sh",
        "-c",
        'hostname "$0" && exec "$@"',
        hostname,
        *dockerd,
    ]
    log_path = slot.log_path(spec.name)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no Ctrl-C from the terminal; close() stops it
        )
    return SwarmNode(
        name=spec.name,
        ip=slot.node_ip(index),
        socket=socket,
        client=None,  # type: ignore[arg-type]  # set once the engine answers
        generic_resources={kind: tuple(ids) for kind, ids in spec.generic_resources.items()},
        hostname=hostname,
        netns=netns,
        labels={NODE_LABEL: spec.name, **spec.labels},
        log_path=log_path,
        data_root=data_root,
        exec_root=exec_root,
        process=process,
    )


def _wait_for_engine(node: SwarmNode) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if node.process is not None and node.process.poll() is not None:
            raise SwarmError(f"{node.name}: dockerd exited with status {node.process.returncode}")
        if node.socket.exists():
            with contextlib.suppress(DockerException, OSError):
                # "auto" asks the engine for its API version, so only once it answers.
                client = docker.DockerClient(base_url=node.url, timeout=CLIENT_TIMEOUT)
                if client.ping():
                    node.client = client
                    return
        time.sleep(0.2)
    raise SwarmError(f"{node.name}: dockerd did not answer within {START_TIMEOUT:.0f} s")


def _form_swarm(cluster: SwarmCluster) -> None:
    manager = cluster.manager_node
    manager.client.swarm.init(
        advertise_addr=manager.ip,
        listen_addr=f"{manager.ip}:2377",
        # A long history only slows task listings; tests look at the newest tasks.
        task_history_retention_limit=2,
    )
    manager.client.swarm.reload()
    token = manager.client.swarm.attrs["JoinTokens"]["Worker"]

    def join(node: SwarmNode) -> None:
        node.client.swarm.join(
            remote_addrs=[f"{manager.ip}:2377"],
            join_token=token,
            listen_addr=f"{node.ip}:2377",
            advertise_addr=node.ip,
        )

    _in_parallel(join, cluster.nodes[1:])
    for node in cluster.nodes:
        node.node_id = node.client.info()["Swarm"]["NodeID"]
        if not node.node_id:
            raise SwarmError(f"{node.name}: no swarm node id after joining")

    def all_ready() -> bool:
        by_id = {n.id: n.attrs for n in cluster.manager.nodes.list()}
        return all(
            node.node_id in by_id
            and by_id[node.node_id]["Status"]["State"] == "ready"
            and _advertised_resources(by_id[node.node_id]) == _expected_resources(node)
            for node in cluster.nodes
        )

    cluster.wait_for(all_ready, START_TIMEOUT, "every node ready with its generic resources")
    for node in cluster.nodes:
        swarm_node = cluster.manager.nodes.get(node.node_id)
        spec = dict(swarm_node.attrs["Spec"])
        spec["Labels"] = {**spec.get("Labels", {}), **node.labels}
        swarm_node.update(spec)


def _advertised_resources(attrs: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for item in attrs["Description"].get("Resources", {}).get("GenericResources") or []:
        named = item.get("NamedResourceSpec")
        if named:
            found.add((named["Kind"], named["Value"]))
    return found


def _expected_resources(node: SwarmNode) -> set[tuple[str, str]]:
    return {(kind, rid) for kind, ids in node.generic_resources.items() for rid in ids}


class _Phases:
    """``with phase("name"):`` adds the block's seconds to ``timings["name"]``."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - started


def _saved_image(client: docker.DockerClient, tag: str, image_id: str) -> Path:
    """``docker save`` of ``tag`` (with its tag, unlike ``Image.save()``), cached by id."""
    name = tag.replace("/", "_").replace(":", "_")
    archive = IMAGE_CACHE / f"{name}@{image_id.split(':')[-1][:16]}.tar"
    if archive.is_file():
        return archive
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    with file_lock(f"swarm-image-{name}"):
        if archive.is_file():
            return archive
        for stale in IMAGE_CACHE.glob(f"{name}@*.tar"):  # older builds of this tag
            stale.unlink(missing_ok=True)
        partial = archive.with_suffix(f".{os.getpid()}.part")
        try:
            with open(partial, "wb") as out:
                for chunk in client.api.get_image(tag):
                    out.write(chunk)
            partial.rename(archive)
        finally:
            partial.unlink(missing_ok=True)
    return archive


# What a data-root template keeps: the image store (graph driver folders, image/, and
# containerd/ for engines using containerd's image store), not per-engine state.
TEMPLATE_LEAVE_OUT = {
    "swarm", "containers", "network", "volumes", "engine-id", "tmp", "runtimes",
    "plugins", "buildkit", "trust",
}  # fmt: skip
# GNU tar keeping what overlay2 layers hold: whiteouts (device files), opaque-dir xattrs.
TAR = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--selinux"]


def _seed_data_roots(
    host_client: docker.DockerClient,
    tags: Sequence[str],
    slot: _Slot,
    netns: str,
    data_roots: Sequence[Path],
    phase: _Phases,
) -> None:
    """Fill fresh data-roots from a template data-root whose engine has ``tags`` loaded.

    The template is made by a dockerd of its own (in ``netns``) that only loads the images
    (no container, no swarm) and stops, on the slot's tmpfs; it is kept on disk as one tar
    per set of image ids (IMAGE_CACHE; thousands of small files write slowly there), so a
    later session only unpacks it. Each node gets a copy of the template's metadata and
    its overlay2 image layers as symlinks into it: image layers are only ever lower
    (read-only) layers, so the nodes share them as one engine's containers do.
    """
    wanted = {tag: host_client.images.get(tag).id for tag in sorted(set(tags))}
    key = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]
    archive = IMAGE_CACHE / f"data-root-{key}.tar"
    template = slot.state_dir / "template"
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    with file_lock("swarm-data-root-cache"):
        _prune_archives(host_client, keep=archive)
        if not archive.is_file():
            _build_template(host_client, wanted, slot, netns, template, phase)
            with phase("image cache written"):
                partial = archive.with_suffix(f".{os.getpid()}.part")
                try:
                    _run([*TAR, "-cf", str(partial), "-C", str(template), "."], timeout=900)
                    partial.rename(archive)
                finally:
                    partial.unlink(missing_ok=True)
                archive.with_suffix(".json").write_text(json.dumps({"images": wanted}))
    if not template.is_dir():
        template.mkdir()
        with phase("image cache unpacked"):
            _run([*TAR, "-xpf", str(archive), "-C", str(template)], timeout=900)
    with phase("image layers linked"):
        _in_parallel(lambda root: _fill_data_root(template, root), data_roots)


def _fill_data_root(template: Path, data_root: Path) -> None:
    data_root.mkdir(parents=True, exist_ok=True)
    copies = [p for p in template.iterdir() if p.name != "overlay2"]
    if copies:
        _run(["cp", "-a", *map(str, copies), str(data_root)], timeout=600)
    layers = template / "overlay2"
    if layers.is_dir():
        (data_root / "overlay2").mkdir(mode=0o710)
        for layer in layers.iterdir():
            if layer.name == "l":  # short names: relative symlinks to ../<layer>/diff
                _run(["cp", "-a", str(layer), str(data_root / "overlay2")])
            else:
                (data_root / "overlay2" / layer.name).symlink_to(layer)


def _prune_archives(host_client: docker.DockerClient, keep: Path) -> None:
    """Delete cached templates of images the host engine no longer has, and partial ones."""
    for stale in IMAGE_CACHE.glob("data-root-*"):
        if stale == keep or stale == keep.with_suffix(".json"):
            continue
        if stale.suffix == ".tar" and _archive_usable(stale, host_client):
            continue
        if stale.suffix == ".json" and stale.with_suffix(".tar").is_file():
            continue  # goes with its archive
        stale.unlink(missing_ok=True)
        stale.with_suffix(".json").unlink(missing_ok=True)


def _archive_usable(archive: Path, host_client: docker.DockerClient) -> bool:
    try:
        images = json.loads(archive.with_suffix(".json").read_text())["images"]
        return all(host_client.images.get(tag).id == image_id for tag, image_id in images.items())
    except (OSError, ValueError, KeyError, DockerException):
        return False


def _build_template(
    host_client: docker.DockerClient,
    wanted: dict[str, str],
    slot: _Slot,
    netns: str,
    template: Path,
    phase: _Phases,
) -> None:
    seed = _start_node(slot, 0, NodeSpec("seed"), netns=netns, data_root=template)
    try:
        _wait_for_engine(seed)
        with phase("images saved+loaded once"):
            for tag, image_id in wanted.items():
                # Straight from `docker save` (with its tag) into `docker load`: no archive.
                seed.client.images.load(host_client.api.get_image(tag))
                if seed.client.images.get(tag).id != image_id:
                    raise SwarmError(f"seeding data-roots: {tag} did not load as {image_id}")
        seed.client.close()
    except Exception as exc:
        raise SwarmError(f"seeding data-roots failed: {exc}\n{_log_tails([seed])}") from exc
    finally:
        _stop_dockerd(seed)
        _unmount_below(template)
    for entry in template.iterdir():
        if entry.name in TEMPLATE_LEAVE_OUT:
            _run(["rm", "-rf", "--one-file-system", str(entry)], check=False, timeout=900)


# ---------------------------------------------------------------------------- teardown


def _running_containers(node: SwarmNode) -> list[Any]:
    return node.client.containers.list(filters={"label": "com.docker.swarm.task.id"})


def _kill_service_containers(node: SwarmNode, service_ids: set[str]) -> None:
    for container in node.client.containers.list(all=True):
        if container.labels.get("com.docker.swarm.service.id") in service_ids:
            with contextlib.suppress(NotFound, APIError):
                container.remove(force=True)


def _stop_dockerd(node: SwarmNode) -> None:
    process = node.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _sweep(slot: _Slot) -> None:
    """Remove whatever slot ``slot`` left: processes, mounts, folders, cgroups, network.

    Idempotent; safe only while holding the slot's lock (nothing live uses the names).
    """
    netns_names = [n for n in _list_netns() if n.startswith(f"{slot.tag}-")]
    pids: set[int] = set()
    for netns in netns_names:
        out = _run(["ip", "netns", "pids", netns], check=False).stdout
        pids.update(int(p) for p in out.split() if p.isdigit())
    pids.update(_pids_mentioning(str(slot.run_dir) + "/"))
    cgroups = _slot_cgroups(slot)
    for group in cgroups:
        for procs in group.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    pids.discard(os.getpid())
    _kill_all(pids)
    for root in (slot.run_dir, slot.state_dir):
        _unmount_below(root)
        if root.exists():
            _run(["rm", "-rf", "--one-file-system", str(root)], check=False, timeout=900)
    for group in cgroups:
        for folder in sorted(
            (p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            group.rmdir()
    for link in _list_links():
        if link.startswith(f"{slot.tag}n"):
            _run(["ip", "link", "del", link], check=False)
    for netns in netns_names:
        _run(["ip", "netns", "del", netns], check=False)
    if slot.bridge in _list_links():
        _run(["ip", "link", "del", slot.bridge], check=False)
    if shutil.which("iptables"):
        for _ in range(10):  # once per copy of the rule a crashed run may have left
            if _run(["iptables", "-D", *slot.iptables_rule()], check=False).returncode != 0:
                break


def _list_netns() -> list[str]:
    if not shutil.which("ip"):
        return []
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _list_links() -> list[str]:
    if not shutil.which("ip"):
        return []
    out = _run(["ip", "-o", "link", "show"], check=False).stdout
    # "7: gpuenv-sw0n1@if2: <...>" -> "gpuenv-sw0n1"
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _pids_mentioning(text: str) -> set[int]:
    """Processes whose command line contains ``text`` (dockerd, containerd, shims)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if text.encode() in cmdline:
                found.add(int(entry.name))
    return found


def _slot_cgroups(slot: _Slot) -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    pattern = f"{slot.tag}-*"
    return sorted({*CGROUP_ROOT.glob(pattern), *CGROUP_ROOT.glob(f"*/{pattern}")})


def _kill_all(pids: set[int], timeout: float = 10.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {pid for pid in pids if _alive(pid)}
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _unmount_below(root: Path) -> None:
    prefix = str(root) + "/"
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = _unescape_mount(line.split()[4])
            if point == str(root) or point.startswith(prefix):
                mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        _run(["umount", "-l", point], check=False)


def _unescape_mount(path: str) -> str:
    return path.encode().decode("unicode_escape") if "\\" in path else path


# ---------------------------------------------------------------------------- helpers


def _run(
    command: list[str], check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise SwarmError(
            f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def _in_parallel(
    function: Callable[[SwarmNode], Any], nodes: Sequence[SwarmNode], swallow: bool = False
) -> None:
    """Run ``function`` on every node at once; raise the first error (after all finish)."""
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        futures = [pool.submit(function, node) for node in nodes]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors and not swallow:
        raise errors[0]  # type: ignore[misc]


# dockerd lines that say nothing about a failure here: every task start tries to pull its
# image first (no registry is reachable: fine, the image is loaded), and gRPC chatter.
LOG_NOISE = ("Error getting v2 registry", "Attempting next endpoint for pull", "[core]")


def _log_tails(nodes: Sequence[SwarmNode], lines: int = 15) -> str:
    parts = []
    for node in nodes:
        try:
            text = node.log_path.read_text(errors="replace").splitlines()
        except OSError:
            text = ["(no log)"]
        text = [line for line in text if not any(noise in line for noise in LOG_NOISE)]
        tail = "\n    ".join(text[-lines:])
        parts.append(
            f"--- {node.name} dockerd log {node.log_path} (last {lines} lines, "
            f"without pull and gRPC chatter):\n    {tail}"
        )
    return "\n".join(parts)


@contextlib.contextmanager
def swarm_cluster(
    layout: Sequence[NodeSpec] | None = None, host_client: docker.DockerClient | None = None
) -> Iterator[SwarmCluster]:
    """``with swarm_cluster(gpu_layout(1, 1)) as cluster: ...``"""
    cluster = start_swarm_cluster(layout, host_client)
    try:
        yield cluster
    finally:
        cluster.close()


def sweep_leftovers() -> dict[int, str]:
    """Sweep every slot nobody holds (a crashed run's leftovers); slot -> what happened."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    outcome = {}
    for number in range(MAX_SLOTS):
        slot = _Slot(number)
        with open(slot.lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                outcome[number] = "in use, left alone"
                continue
            found = leftovers(number)
            _sweep(slot)
            outcome[number] = f"swept {len(found)} leftovers" if found else "clean"
    return outcome


def leftovers(slot: int) -> list[str]:
    """What of slot ``slot`` exists now: processes, mounts, folders, cgroups, network."""
    names = _Slot(slot)
    found = [f"netns {n}" for n in _list_netns() if n.startswith(f"{names.tag}-")]
    found += [
        f"link {link}"
        for link in _list_links()
        if link == names.bridge or link.startswith(f"{names.tag}n")
    ]
    found += [f"process {pid}" for pid in sorted(_pids_mentioning(str(names.run_dir) + "/"))]
    found += [f"folder {d}" for d in (names.run_dir, names.state_dir) if d.exists()]
    found += [f"cgroup {group}" for group in _slot_cgroups(names)]
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = _unescape_mount(line.split()[4])
            if any(point.startswith(str(d)) for d in (names.run_dir, names.state_dir)):
                found.append(f"mount {point}")
    if shutil.which("iptables"):
        rule = names.iptables_rule()
        if _run(["iptables", "-C", *rule], check=False).returncode == 0:
            found.append(f"iptables rule {' '.join(rule)}")
    return found


def main(argv: list[str]) -> int:
    """``sweep``: remove leftovers of crashed runs (slots nobody holds)."""
    if argv != ["sweep"]:
        print("usage: python -m tests.support.swarm sweep", file=sys.stderr)
        return 2
    check_prerequisites(install=False)
    for number, outcome in sweep_leftovers().items():
        print(f"slot {number}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
