"""All warm pools of a server: built from the configuration, kept in the background.

One task tends every pool: at start, after each hand-out (:meth:`WarmKernels.wake`) and
every :data:`TEND_INTERVAL` seconds. Each round matches the configured entries to the
catalog again and reads the kernelspec the server would start: an environment that
went away, or a kernelspec that changed (image, prefix, provisioner settings), drains
that pool and starts it afresh (a changed ``c.GpuEnv`` takes effect when the server
restarts, as every setting does); :meth:`stop` leaves no warm kernel behind.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...config import GpuEnv
from ...environments.catalog import Catalog
from ...environments.model import Environment
from ...gpu.attribution import KernelRecord
from .pool import WarmPool
from .pool_config import (
    WarmSpec,
    environment_refusal,
    find_environment,
    mode_refusal,
    warm_specs,
)
from .warm_kernel import WarmKernel, start_warm_kernel

TEND_INTERVAL = 5.0


class WarmKernels:
    """The pools of one server, keyed by the kernelspec name they serve."""

    def __init__(self, config: GpuEnv, catalog: Catalog, mkm: Any, log: logging.Logger) -> None:
        self._catalog = catalog
        self._mkm = mkm
        self._log = log
        self._timeout = float(config.kernel_start_timeout)
        self.refusal: str | None = None
        self._specs: list[WarmSpec] = []
        self._pools: dict[str, WarmPool] = {}  # by spec key
        self._unserved: dict[str, str] = {}  # spec key -> why it has no pool
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._set_specs(config)

    def _set_specs(self, config: GpuEnv) -> None:
        self._timeout = float(config.kernel_start_timeout)
        self.refusal = mode_refusal(config)
        self._specs = [] if self.refusal else [s for s in warm_specs(config) if s.count > 0]
        if self.refusal:
            self._log.error("jupyter_gpuenv: %s", self.refusal)

    @property
    def enabled(self) -> bool:
        return bool(self._specs)

    # -- life -----------------------------------------------------------------------

    def start(self) -> None:
        """Begin tending in the background (on the server's event loop)."""
        if self._task is None and self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop tending and shut every warm kernel down (server stop)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(p.close(self._timeout) for p in pools), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.tend()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("jupyter_gpuenv: tending the warm kernels failed")
            try:
                await asyncio.wait_for(self._wake.wait(), TEND_INTERVAL)
            except TimeoutError:
                pass
            self._wake.clear()

    # -- one round ------------------------------------------------------------------

    async def tend(self) -> None:
        """Match the entries to the catalog and bring every pool to its count."""
        environments = await self._catalog.list_environments()
        for spec in self._specs:
            env = find_environment(spec, environments)
            why = environment_refusal(env) if env is not None else None
            if env is None:
                why = f"no environment named {spec.key!r} in the catalog (name or id)"
            kernelspec = None
            if why is None and env is not None:
                kernelspec, why = self._started_from(env)
            pool = self._pools.get(spec.key)
            if why is not None or env is None or kernelspec is None:
                self._unserved[spec.key] = why or "unknown"
                if pool is not None:
                    del self._pools[spec.key]
                    await pool.close(self._timeout)
                continue
            self._unserved.pop(spec.key, None)
            if pool is not None and (pool.environment_id, pool.kernel_name) != (
                env.id,
                env.kernel_name,
            ):
                del self._pools[spec.key]
                await pool.close(self._timeout)
                pool = None
            if pool is None:
                pool = self._pools[spec.key] = WarmPool(
                    spec, env.id, env.kernel_name, self._start_kernel, self._log
                )
            await pool.tend(kernelspec)

    def _started_from(self, env: Environment) -> tuple[dict[str, Any] | None, str | None]:
        """What a cold start of ``env`` would start from now (its kernelspec, its image or
        prefix, its settings), or why warm kernels cannot serve it. A warm kernel is only
        handed out while this is what it was started from."""
        try:
            spec = self._mkm.kernel_spec_manager.get_kernel_spec(env.kernel_name)
        except Exception as err:
            return None, f"no kernelspec {env.kernel_name!r}: {err}"
        if str(getattr(spec, "language", "")).lower() != "python":
            return None, "warm kernels are prepared with Python code; this kernel is not Python"
        return {
            "kernelspec": spec.to_dict(),
            "location": env.location,
            "settings": env.settings,
        }, None

    async def _start_kernel(
        self, kernel_name: str, kernelspec: dict[str, Any], preimport: tuple[str, ...]
    ) -> WarmKernel:
        return await start_warm_kernel(self._mkm, kernel_name, kernelspec, preimport, self._timeout)

    # -- hand-out and status --------------------------------------------------------

    def pool_for(self, kernel_name: str) -> WarmPool | None:
        for pool in self._pools.values():
            if pool.kernel_name == kernel_name.lower():
                return pool
        return None

    def started_from(self, pool: WarmPool) -> dict[str, Any] | None:
        """What a cold start of the pool's environment would start from right now."""
        for env in self._catalog.cached_environments():
            if env.id == pool.environment_id and env.kernel_name == pool.kernel_name:
                return self._started_from(env)[0]
        return None

    def kernel_records(self) -> list[KernelRecord]:
        """The ready warm kernels as GPU attribution knows kernels (GPU status counts them)."""
        records = []
        for pool in self._pools.values():
            for warm in pool.ready_kernels():
                provisioner = getattr(warm.manager, "provisioner", None)
                pid = getattr(provisioner, "pid", None)
                container_id = getattr(provisioner, "container_id", None)
                records.append(
                    KernelRecord(
                        kernel_id=warm.kernel_id,
                        environment_id=pool.environment_id,
                        container_id=container_id if isinstance(container_id, str) else None,
                        pid=pid if isinstance(pid, int) else None,
                    )
                )
        return records

    def status(self) -> dict[str, Any]:
        pools = [pool.status() for pool in self._pools.values()]
        for spec in self._specs:
            if spec.key in self._unserved:
                pools.append(
                    {
                        "environment": spec.key,
                        "size": spec.count,
                        "ready": 0,
                        "starting": 0,
                        "preimport": list(spec.preimport),
                        "last_error": self._unserved[spec.key],
                    }
                )
        return {"refused": self.refusal, "pools": sorted(pools, key=lambda p: p["environment"])}
