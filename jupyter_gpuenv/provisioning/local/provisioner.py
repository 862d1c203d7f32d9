"""Kernels in a conda env or venv on this machine, started as ``conda activate`` would.

The process side (Popen, signals to the process group, ports, connection file) is
jupyter_client's LocalProvisioner; this subclass only decides which python runs and with
which environment: the env's own interpreter, the activation variables computed by
activation.py (cached per prefix state, no ``conda run``), the GPU selection of the
policy as CUDA_VISIBLE_DEVICES, and the kernel-side package for ``%gpuinfo``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from ...gpu_set import GpuSet
from .. import kernel_history, start_progress
from ..kernel_errors import KernelStartFailed
from ..kernel_side import (
    START_WARNING_ENV,
    ipykernel_argv,
    kernel_side_env,
    local_kernel_side_dir,
    use_curve,
)
from ..policy.launch_policy import LOCAL_KEYS, EffectiveLaunch, local_gpu_environment
from ..provisioner_base import GpuEnvProvisionerMixin
from .activation import activated_env


# LocalProvisioner's metaclass derives from traitlets' and ABCMeta; mypy cannot see it.
class LocalEnvProvisioner(GpuEnvProvisionerMixin, LocalProvisioner):  # type: ignore[metaclass]
    """Runs ipykernel with a catalog conda env's or venv's python, activated."""

    _progress: start_progress.StartProgress | None = None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Resolve the environment, then let LocalProvisioner write the connection file."""
        progress = self._progress = start_progress.begin(self.kernel_id or "", self.environment_id)
        progress.step("environment", f"Looking up environment {self.environment_id}")
        try:
            return await self._pre_launch(progress, **kwargs)
        except BaseException as err:
            progress.fail(start_progress.reason_of(err))
            raise

    async def _pre_launch(
        self, progress: start_progress.StartProgress, **kwargs: Any
    ) -> dict[str, Any]:
        env = await self.resolve_environment()
        progress.environment_name, progress.display_name = env.name, env.display_name
        if env.kind not in ("conda", "venv"):
            raise KernelStartFailed(
                f"Environment {env.id!r} is a {env.kind} environment; its kernelspec must use "
                "gpuenv-docker-provisioner."
            )
        launch = self.apply_policy(env, LOCAL_KEYS)
        warning = self.check_compatibility(env)
        prefix = str(env.location.get("prefix") or "")
        python = env.python_executable or os.path.join(prefix, "bin", "python")
        if not prefix or not os.path.isdir(prefix):
            raise KernelStartFailed(
                f"The {env.kind} environment {env.name!r} is gone: {prefix or '(no prefix)'} "
                "does not exist any more."
            )
        if not os.access(python, os.X_OK):
            raise KernelStartFailed(f"{python} is not an executable python interpreter.")
        if not env.ipykernel:
            raise KernelStartFailed(
                f"ipykernel is not installed in {prefix}; install it there "
                f"(`{python} -m pip install ipykernel` or `conda install -p {prefix} ipykernel`)."
            )

        extra = list(kwargs.get("extra_arguments") or [])
        # LocalProvisioner provisions the CurveZMQ keys when "required".
        encrypt = use_curve(self.parent, kwargs.pop("transport_encryption", None), env)
        kwargs["transport_encryption"] = "required" if encrypt else "disabled"
        kwargs = await super().pre_launch(**kwargs)
        base_env = kwargs["env"]
        # Activation (and the activate.d scripts) runs in a thread: first use per prefix
        # state starts bash once, later starts hit the cache.
        progress.step("activation", f"Activating {env.name} ({env.kind})")
        kernel_env = await asyncio.to_thread(
            activated_env, env.kind, prefix, base_env, dict(os.environ), self.log
        )
        kernel_env.update(local_gpu_environment(self.gpuenv_config, launch_gpus(self, launch)))
        kernel_side = await asyncio.to_thread(local_kernel_side_dir)
        kernel_env.update(
            kernel_side_env(env.id, self.kernel_id or "", kernel_side, kernel_env.get("PYTHONPATH"))
        )
        kernel_env.update(kernel_history.previous_exit_environment(self.kernel_id))
        if warning:
            kernel_env[START_WARNING_ENV] = warning
        kwargs["env"] = kernel_env
        kwargs["cmd"] = ipykernel_argv(python, self._connection_file(), extra)
        return kwargs

    def _connection_file(self) -> str:
        km = self.parent
        path = getattr(km, "connection_file", None)
        if not path:
            raise KernelStartFailed("The kernel manager wrote no connection file.")
        return os.path.realpath(path)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Start the process; a missing interpreter becomes a readable start error."""
        self._exit_recorded = False
        kernel_history.history_of(self.kernel_id or "").starts += 1
        progress = self._progress or start_progress.begin(self.kernel_id or "", self.environment_id)
        progress.step("process", f"Starting {cmd[0] if cmd else 'the kernel'}")
        try:
            info = await super().launch_kernel(cmd, **kwargs)
        except OSError as err:
            progress.fail(f"Could not start {cmd[0]}: {err}")
            raise KernelStartFailed(f"Could not start {cmd[0]}: {err}") from err
        except BaseException as err:
            progress.fail(str(err) or type(err).__name__)
            raise
        progress.finish(f"Kernel started in {time.time() - progress.started:.1f} s")
        return info

    _exit_recorded = False

    async def poll(self) -> int | None:
        """LocalProvisioner's answer; a death seen outside a shutdown is kept with its cause."""
        code = await super().poll()
        if code is not None and self.process is not None:
            self._record_exit(code, requested=bool(getattr(self.parent, "shutting_down", False)))
        return code

    async def wait(self) -> int | None:
        process = self.process
        code = await super().wait()
        if process is not None:
            self._record_exit(process.returncode, requested=True)
        return code

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart)
        if not restart:
            kernel_history.forget(self.kernel_id or "")

    def _record_exit(self, code: int | None, requested: bool) -> None:
        if self._exit_recorded:
            return
        self._exit_recorded = True
        exit_ = kernel_history.process_exit(code, requested)
        kernel_history.history_of(self.kernel_id or "").last_exit = exit_
        if not requested:
            self.log.warning("Kernel %s ended: %s", self.kernel_id, exit_.reason)

    async def get_provisioner_info(self) -> dict[str, Any]:
        """LocalProvisioner's record plus the environment, for persistence."""
        info = await super().get_provisioner_info()
        info["environment_id"] = self.environment_id
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        """Inverse of get_provisioner_info."""
        await super().load_provisioner_info(provisioner_info)
        self.environment_id = provisioner_info.get("environment_id", self.environment_id)


def launch_gpus(provisioner: LocalEnvProvisioner, launch: EffectiveLaunch) -> GpuSet | None:
    """The kernelspec's own (policy-checked) GPU narrowing, else None for the admin's."""
    return launch.gpus if "gpus" in provisioner.requested_config else None
