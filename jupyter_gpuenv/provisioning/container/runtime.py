"""Where a container kernel runs: one interface, three runtimes.

The Docker provisioner (provisioner.py) picks one runtime per kernel from the
configuration, once, and hands it every step of the kernel's life:

* ``engine/``: a container of this server's Docker engine;
* ``swarm/``: a one-replica Docker Swarm service, on whichever node has the GPUs;
* ``brokered/``: a container the kernel broker starts for this Hub user (the server has
  no Docker access at all).

The broker's own kernel records (jupyter_gpuenv/broker) use the engine and Swarm
runtimes for the same steps. A runtime is re-attached from its :meth:`record`, after a
server restart or by the broker after its own.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from docker import DockerClient

from ..kernel_errors import KernelStartFailed

if TYPE_CHECKING:
    from jupyter_client.manager import KernelManager

    from ..start_progress import StartProgress
    from .preparation import ContainerPreparation


@dataclass
class RuntimeContext:
    """What a runtime needs from whoever owns its kernel.

    ``manager`` is the kernel's manager in a Jupyter server (its connection info reaches
    the kernel's control channel); None where nobody holds one (the broker's records).
    ``owned`` is False where kernels must outlive this process (the broker's): they are
    then not removed at its exit and leave no kernel history here.
    """

    kernel_id: str
    log: logging.Logger
    docker: Callable[[bool], DockerClient]  # ping: whether to check that Docker answers
    docker_host: str | None = None
    manager: KernelManager | None = None
    broker_url: str = ""
    owned: bool = True

    def client(self, ping: bool = False) -> DockerClient:
        """The Docker client of the kernel's engine or Swarm manager."""
        return self.docker(ping)


@dataclass
class KernelStart:
    """One start of a kernel, as the provisioner hands it to its runtime."""

    kernel_id: str
    environment_id: str
    manager: KernelManager
    progress: StartProgress
    # Resolves the environment, the admin's policy, the image and the gated container
    # request: for runtimes that run the container themselves (engine, Swarm).
    preparation: ContainerPreparation
    requested_config: dict[str, Any] = field(default_factory=dict)
    kernel_name: str = ""
    transport_encryption: str | None = None
    extra_arguments: list[str] = field(default_factory=list)
    session_name: str = ""
    cwd: str = ""
    server_env: dict[str, str] = field(default_factory=dict)
    # Set by the runtime: the doctor's warning the kernel started with, when another
    # process (the broker) judged the start.
    start_warning: str | None = None

    async def resolve_container(self) -> None:
        """For runtimes that run the container themselves: environment, policy, doctor,
        keys, ports and the connection file (preparation.py)."""
        await self.preparation.resolve(
            self.progress, self.transport_encryption, self.extra_arguments, self.session_name
        )


class KernelRuntime(ABC):
    """One kernel's life in one runtime, from create to remove.

    Each method states when the provisioner calls it; none raises for a kernel that is
    already gone, except where it says so.
    """

    kind: ClassVar[str]

    def __init__(self, context: RuntimeContext) -> None:
        self.context = context

    @property
    def log(self) -> logging.Logger:
        return self.context.log

    @abstractmethod
    async def prepare(self, start: KernelStart) -> None:
        """From ``pre_launch``: fix what must be known before the start (environment,
        policy, ports, the connection file), or leave it to whoever runs the kernel."""

    @abstractmethod
    async def create(self, start: KernelStart) -> dict[str, Any]:
        """From ``launch_kernel``: start the kernel and return its connection info once its
        ports answer. On failure nothing of the kernel is left and the error says why."""

    @property
    @abstractmethod
    def exists(self) -> bool:
        """Whether a kernel was created and not removed since."""

    @abstractmethod
    async def poll(self) -> int | None:
        """None while the kernel runs or cannot be asked now; else its exit code (-1 when
        it vanished). Never raises."""

    @abstractmethod
    async def signal(self, signum: int) -> None:
        """Deliver ``signum`` to the kernel (SIGINT interrupts, SIGTERM/SIGKILL end it).

        Raises SignalNotDelivered when the runtime cannot deliver that signal, and
        KernelDisconnected when the runtime's daemon does not answer."""

    @abstractmethod
    async def remove(self, requested: bool = True) -> None:
        """Remove the kernel and everything of it (container or service, secret, copy of
        the connection file), keeping why it ended. ``requested``: a shutdown, not a
        death. Idempotent."""

    @abstractmethod
    async def logs(self) -> str:
        """The kernel's last output lines ("" when it is gone)."""

    def placement(self) -> dict[str, Any] | None:
        """The node and GPUs of a kernel that runs elsewhere; None for this host."""
        return None

    def describe(self) -> dict[str, Any]:
        """The container's id, name and image for the kernel REST (None where unknown)."""
        return {"id": None, "name": None, "image": None}

    @abstractmethod
    def keep_after_exit(self) -> None:
        """Leave the kernel running when this process exits (the broker's kernels)."""

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """JSON that :meth:`from_record` turns back into a runtime of the same kernel."""

    @classmethod
    @abstractmethod
    def from_record(cls, record: dict[str, Any], context: RuntimeContext) -> KernelRuntime:
        """Re-attach to the kernel a :meth:`record` describes (after a restart)."""


def record_text(record: dict[str, Any], name: str) -> str:
    """A record's text field ("" when absent); a record is JSON read back from disk."""
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise KernelStartFailed(f"The kernel's runtime record has a bad {name!r}: {value!r}.")
    return value
