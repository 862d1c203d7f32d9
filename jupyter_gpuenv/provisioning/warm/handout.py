"""Hand a warm kernel to a ``POST /api/kernels`` (or a new session) instead of a cold start.

How the server adopts a kernel that is already running, through jupyter_client's own
start path so that every piece of the server's bookkeeping (ports, activity watching,
restart callbacks, culling, metrics, pending kernels) happens as for a cold kernel:

1. The server's ``MultiKernelManager.start_kernel`` is wrapped (on the instance). For a
   start without a kernel id, of a kernelspec with a pool, in a folder under the root
   the warm kernels were started in, with the kernelspec, image or prefix and settings
   of the environment unchanged since the kernel started, a ready kernel is
   taken from the pool and moved to the notebook's folder silently (kernel_code.py).
2. The wrapped start then runs with ``kernel_id`` = the warm kernel's id. jupyter_client
   asks ``kernel_manager_factory`` for a manager; the factory (also wrapped) returns the
   warm kernel's manager, whose next ``start_kernel`` call is answered as done: the
   kernel is already running. jupyter_server then registers it under that id.
3. The manager's launch arguments become the notebook's folder and variables, so a
   restart starts a clean kernel (cold) in the same folder.

Anything that does not fit (no ready kernel, another folder, a failed preparation)
starts cold, as without warm kernels.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .kernel_code import handout_code, run_silently
from .pools import WarmKernels
from .warm_kernel import WarmKernel

PREPARE_TIMEOUT = 10.0


def inside(folder: str, root: str) -> bool:
    """Whether ``folder`` is ``root`` or below it (both resolved)."""
    folder, root = os.path.realpath(folder), os.path.realpath(root)
    return os.path.commonpath([folder, root]) == root


def own_variables(env: Any) -> dict[str, str]:
    """The variables a start asks for beyond the server's own (JPY_SESSION_NAME, ...)."""
    if not isinstance(env, dict):
        return {}
    return {
        str(k): str(v) for k, v in env.items() if isinstance(v, str) and os.environ.get(str(k)) != v
    }


class KernelHandout:
    """Installs the hand-out on the server's MultiKernelManager (see the module doc)."""

    def __init__(self, mkm: Any, warm: WarmKernels, log: logging.Logger) -> None:
        self._mkm = mkm
        self._warm = warm
        self._log = log
        self._cold_start = mkm.start_kernel
        self._factory = mkm.kernel_manager_factory
        self._claims: dict[str, Any] = {}  # kernel id -> warm manager being adopted

    def install(self) -> None:
        self._mkm.kernel_manager_factory = self._manager_for
        self._mkm.start_kernel = self.start_kernel

    # -- jupyter_client's seams -----------------------------------------------------

    def _manager_for(self, *args: Any, **kwargs: Any) -> Any:
        """The warm manager claimed for this kernel id, else a new one as before."""
        name = os.path.basename(str(kwargs.get("connection_file") or ""))
        kernel_id = name.removeprefix("kernel-").removesuffix(".json")
        manager = self._claims.pop(kernel_id, None)
        if manager is None:
            return self._factory(*args, **kwargs)
        return manager

    async def start_kernel(self, *, kernel_id: str | None = None, **kwargs: Any) -> str:
        """The server's start, with a warm kernel when one fits."""
        if kernel_id is None:
            adopted = await self._hand_out(kwargs)
            if adopted is not None:
                return adopted
        return str(await self._cold_start(kernel_id=kernel_id, **kwargs))

    # -- the hand-out ---------------------------------------------------------------

    async def _hand_out(self, kwargs: dict[str, Any]) -> str | None:
        name = str(kwargs.get("kernel_name") or self._mkm.default_kernel_name)
        pool = self._warm.pool_for(name)
        if pool is None:
            return None
        path = kwargs.get("path")
        env = kwargs.get("env") or {}
        cwd = self._mkm.cwd_for_path(path, env=env) if path is not None else self._mkm.root_dir
        root = os.path.realpath(str(self._mkm.root_dir))
        if not inside(cwd, root):
            self._log.info("Warm kernel not used: %s is outside %s", cwd, root)
            return None
        started_from = self._warm.started_from(pool)
        if started_from is None:
            return None
        warm = pool.take(started_from, root)
        if warm is None:
            return None
        try:
            return await self._adopt(warm, cwd, env, kwargs)
        finally:
            self._warm.wake()  # refill in the background, once this start is answered

    async def _adopt(
        self, warm: WarmKernel, cwd: str, env: Any, kwargs: dict[str, Any]
    ) -> str | None:
        try:
            await self._prepare(warm, os.path.realpath(cwd), own_variables(env))
        except Exception as err:
            self._log.warning("Warm kernel %s not handed out: %s", warm.kernel_id, err)
            await warm.shutdown()
            return None
        manager = warm.manager
        self._claims[warm.kernel_id] = manager
        manager.start_kernel = _already_started(manager)
        try:
            kernel_id = await self._cold_start(kernel_id=warm.kernel_id, **kwargs)
        except BaseException:
            self._claims.pop(warm.kernel_id, None)
            manager.__dict__.pop("start_kernel", None)
            await warm.shutdown()
            raise
        self._log.info("Kernel %s handed out warm for %s", kernel_id, cwd)
        return str(kernel_id)

    async def _prepare(self, warm: WarmKernel, cwd: str, variables: dict[str, str]) -> None:
        """Move the kernel to ``cwd`` silently; make restarts start there too."""
        await run_silently(warm.client, handout_code(cwd, variables), PREPARE_TIMEOUT, "hand-out")
        warm.release_client()
        manager = warm.manager
        launch_args = dict(getattr(manager, "_launch_args", None) or {})
        launch_args["cwd"] = cwd
        if variables:
            launch_args["env"] = {**os.environ, **variables}
        # jupyter_client restarts a kernel with its launch arguments.
        manager._launch_args = launch_args
        provisioner = getattr(manager, "provisioner", None)
        if provisioner is not None and hasattr(provisioner, "cwd"):
            provisioner.cwd = cwd
        # From now on the kernel is the notebook's: restarted in place if it dies (the
        # server registers its callbacks on this restarter when it adopts the kernel).
        manager.autorestart = warm.autorestart
        if warm.autorestart:
            manager.start_restarter()


def _already_started(manager: Any) -> Any:
    """A one-time ``start_kernel`` for a manager whose kernel runs already."""

    async def start_kernel(**kwargs: Any) -> None:
        manager.__dict__.pop("start_kernel", None)

    return start_kernel
