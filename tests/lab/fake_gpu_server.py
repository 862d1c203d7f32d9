"""Test-only server extension: the GPU sampler of a ``jupyter lab`` process reads a fake NVML.

This machine has no GPU. Enabled next to ``jupyter_gpuenv`` by the browser test of the
GPU section, it rebuilds the server's sampler around ``tests.support.fake_nvml`` (the only
part replaced) with two GPUs, and keeps putting the real host PIDs of the server's running
kernels on GPU 0, as NVML would list a kernel that allocated GPU memory. Attribution
(PID -> kernel -> notebook) is the real one.
"""

from __future__ import annotations

from typing import Any

from tornado.ioloop import IOLoop, PeriodicCallback

from jupyter_gpuenv.gpu.sampler import build_gpu_sampler
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess

GIB = 2**30
KERNEL_GPU_MEMORY = 3 * GIB
STRANGER_PID = 2**22 + 777  # no such process: another user's, hidden from this one


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "tests.lab.fake_gpu_server"}]


def _kernel_pids(serverapp: Any) -> list[int]:
    pids = []
    manager = serverapp.kernel_manager
    for kernel_id in manager.list_kernel_ids():
        provisioner = getattr(manager.get_kernel(kernel_id), "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        if isinstance(pid, int):
            pids.append(pid)
    return sorted(pids)


def _install(serverapp: Any) -> None:
    big = FakeGpu(
        name="NVIDIA A100-SXM4-80GB",
        memory_total=80 * GIB,
        memory_used=52 * GIB,
        utilization=(64, 41),
        temperature=58,
        power_usage_mw=231_000,
        power_limit_mw=400_000,
        compute_capability=(8, 0),
    )
    small = FakeGpu(
        name="NVIDIA L4",
        memory_total=24 * GIB,
        memory_used=22 * GIB,
        utilization=(97, 80),
        temperature=71,
        compute_capability=(8, 9),
        processes=[FakeProcess(STRANGER_PID, 20 * GIB)],
    )
    state = serverapp.web_app.settings["gpuenv"]
    state.gpu_sampler.stop()
    state.gpu_sampler = build_gpu_sampler(
        state.config, serverapp, log=serverapp.log, nvml=FakeNvml([big, small])
    )

    def put_kernels_on_gpu0() -> None:
        big.processes = [FakeProcess(pid, KERNEL_GPU_MEMORY) for pid in _kernel_pids(serverapp)]

    PeriodicCallback(put_kernels_on_gpu0, 250).start()
    serverapp.log.warning("tests.lab.fake_gpu_server: GPU status comes from a FAKE NVML")


def _load_jupyter_server_extension(serverapp: Any) -> None:
    # After jupyter_gpuenv has built its own sampler (extensions load in name order, but
    # do not rely on it): the first loop iteration runs once every extension is loaded.
    IOLoop.current().add_callback(_install, serverapp)
