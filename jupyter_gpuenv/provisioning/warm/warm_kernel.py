"""One kernel started ahead: started exactly as the server would start a cold one.

The kernel manager comes from the server's own MultiKernelManager factory (the server's
KernelManager class, its kernelspec manager, its connection folder), and its start goes
through the same provisioner code path as a cold ``POST /api/kernels`` for the same
kernelspec with the server's root folder as ``cwd``: image or prefix, user, limits,
mounts, policy and the last gate are decided by the provisioner, not here. The kernel is
not in the MultiKernelManager (no REST listing, no culling) until it is handed out.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from .kernel_code import preimport_code, run_silently


@dataclass
class WarmKernel:
    """A started kernel, its open client, and what it was started as."""

    kernel_id: str
    manager: Any  # the server's KernelManager class (ServerKernelManager)
    client: Any  # an async KernelClient with started channels
    spec: dict[str, Any]  # what it was started from: kernelspec, image or prefix, settings
    root: str
    autorestart: bool = True  # the manager's setting, applied at hand-out
    started: float = field(default_factory=time.monotonic)

    def age(self) -> float:
        return time.monotonic() - self.started

    async def alive(self) -> bool:
        try:
            return bool(await self.manager.is_alive())
        except Exception:
            return False

    def release_client(self) -> None:
        """Close the server's own channels (after hand-out or before a shutdown)."""
        try:
            self.client.stop_channels()
        except Exception:  # already closed
            pass

    async def shutdown(self) -> None:
        """Stop the kernel and remove its container or process."""
        self.release_client()
        try:
            await self.manager.shutdown_kernel(now=True)
        finally:
            connection_file = getattr(self.manager, "connection_file", "")
            if connection_file and os.path.exists(connection_file):
                try:
                    os.remove(connection_file)
                except OSError:
                    pass


def kernel_start_kwargs(mkm: Any, cwd: str) -> dict[str, Any]:
    """What the server would pass for a cold start in ``cwd`` (its encryption policy)."""
    kwargs: dict[str, Any] = {"cwd": cwd}
    encryption = getattr(mkm, "transport_encryption", "disabled")
    if isinstance(encryption, str) and encryption != "disabled":
        kwargs["transport_encryption"] = encryption
    return kwargs


async def start_warm_kernel(
    mkm: Any, kernel_name: str, spec: dict[str, Any], preimport: tuple[str, ...], timeout: float
) -> WarmKernel:
    """Start one kernel of ``kernel_name`` in the server's root folder and make it ready.

    Ready means: it answered kernel_info, and ``preimport`` was imported silently. On any
    failure the kernel is shut down and the error propagates.
    """
    kernel_id = mkm.new_kernel_id()
    root = os.path.realpath(str(mkm.root_dir))
    manager = mkm.kernel_manager_factory(
        connection_file=os.path.join(mkm.connection_dir, f"kernel-{kernel_id}.json"),
        parent=mkm,
        log=mkm.log,
        kernel_name=kernel_name,
        kernel_spec_manager=mkm.kernel_spec_manager,
    )
    # A warm kernel that dies is replaced by the pool (with its preimport), not restarted
    # in place by jupyter_client's restarter; the restarter starts at hand-out.
    autorestart = bool(getattr(manager, "autorestart", False))
    manager.autorestart = False
    await manager.start_kernel(kernel_id=kernel_id, **kernel_start_kwargs(mkm, root))
    client = manager.client()
    warm = WarmKernel(kernel_id, manager, client, spec, root, autorestart)
    try:
        client.start_channels()
        await asyncio.wait_for(client.wait_for_ready(timeout=timeout), timeout + 5)
        if preimport:
            await run_silently(client, preimport_code(preimport), timeout, "preimport")
    except BaseException:
        await asyncio.shield(warm.shutdown())
        raise
    return warm
