"""The server configuration the tests start Jupyter with: our extension, ``c.GpuEnv`` alone.

Every source the test does not name is switched off (no host conda envs, venvs or
labelled images), so what a server lists depends only on the test.
"""

from __future__ import annotations

from typing import Any

KSM_CLASS = "jupyter_gpuenv.provisioning.kernelspecs.GpuEnvKernelSpecManager"


def server_config(*, kernelspecs: bool = True, **gpuenv: Any) -> dict[str, Any]:
    """A jp_server_config / config file: the extension, our kernelspecs, ``c.GpuEnv``.

    ``kernelspecs=False`` leaves the kernel spec manager to the extension, as for users.
    """
    settings: dict[str, Any] = {
        "conda_envs_dirs": [],
        "venv_dirs": [],
        "docker_images": {},
        "docker_label_discovery": False,
        "docker_discover_pytorch_images": False,
    }
    settings.update(gpuenv)
    server: dict[str, Any] = {"jpserver_extensions": {"jupyter_gpuenv": True}}
    if kernelspecs:
        server["kernel_spec_manager_class"] = KSM_CLASS
    return {"ServerApp": server, "GpuEnv": settings}
