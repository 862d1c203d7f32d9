"""Warm kernels of a venv: handed to notebooks in their own folder, unseen, cleaned up.

A real ``jupyter server`` process with ``c.GpuEnv.warm_kernels`` for one venv; the
kernels are real ipykernels started by LocalEnvProvisioner.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.provisioning.server_process import ServerProcess, make_shared_dir
from tests.provisioning.warm_support import (
    first_cell,
    pool_status,
    start_session,
    until_pool,
)

# What every IPython kernel's namespace holds before the first cell.
IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
WARM = {"warmvenv": {"count": 1, "preimport": ["colorsys"]}}


@pytest.fixture
def notebooks() -> Path:
    root = make_shared_dir("gpuenv-warm-", None, None)
    for folder in ("a", "b"):
        (root / folder).mkdir()
    return root


@pytest.fixture
def venvs(tmp_path: Path, venv_factory: Callable[..., Path]) -> Path:
    return venv_factory(tmp_path / "venvs" / "warmvenv").parent


@pytest.fixture
def server(
    notebooks: Path, venvs: Path, server_processes: Callable[..., ServerProcess]
) -> ServerProcess:
    return server_processes(notebooks, {"venv_dirs": [str(venvs)], "warm_kernels": WARM})


async def kernel_name(server: ServerProcess) -> str:
    code, listing = await server.request("GET", "/gpuenv/api/environments")
    assert code == 200, listing
    (env,) = [e for e in listing["environments"] if e["name"] == "warmvenv"]
    return str(env["kernel_name"])


def kernel_processes(server: ServerProcess) -> list[int]:
    """Kernel processes whose command line names this server's connection folder."""
    runtime = str(server.home / "runtime")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if runtime in cmdline and "ipykernel" in cmdline:
            found.append(int(entry))
    return found


async def test_handed_out_kernel_is_in_the_notebooks_folder_and_clean(
    server: ServerProcess, notebooks: Path
) -> None:
    name = await kernel_name(server)
    await until_pool(server, "warmvenv", 1)
    kernel_a = await start_session(server, "a/one.ipynb", name)
    (pool,) = await pool_status(server)
    assert pool["handed_out"] == 1, pool
    seen = await first_cell(server, kernel_a)
    assert seen["cwd"] == str(notebooks / "a")
    assert seen["uid"] == os.getuid()
    assert seen["session"] == seen["dunder_session"] == str(notebooks / "a" / "one.ipynb")
    # During a kernel's first cell IPython's counter already reads 2 (a cold kernel too):
    # the reply and the prompt say [1].
    assert seen["count"] == 2
    assert len(seen["inputs"]) == 2 and seen["history"] == [[1, seen["inputs"][1]]], seen
    assert seen["preimported"] is True
    assert set(seen["names"]) - IPYTHON_NAMES == {"json", "os", "sys"}, seen

    # The pool refills; a notebook elsewhere gets another warm kernel, in its folder.
    await until_pool(server, "warmvenv", 1)
    code, kernel = await server.request("POST", "/api/kernels", {"name": name, "path": "b"})
    assert code == 201, kernel
    (pool,) = await pool_status(server)
    assert pool["handed_out"] == 2, pool
    assert kernel["id"] != kernel_a
    other = await first_cell(server, kernel["id"])
    assert other["cwd"] == str(notebooks / "b") and other["count"] == 2


async def test_restart_interrupt_and_shutdown_of_a_handed_out_kernel(
    server: ServerProcess, notebooks: Path
) -> None:
    name = await kernel_name(server)
    await until_pool(server, "warmvenv", 1)
    kernel_id = await start_session(server, "a/two.ipynb", name)
    socket = await server.channels(kernel_id)
    try:
        await socket.run("x = 41")
        msg_id = socket.send("import time; time.sleep(120)")
        await socket.wait_busy(msg_id)
        code, _ = await server.request("POST", f"/api/kernels/{kernel_id}/interrupt")
        assert code == 204
        result = await socket.collect(msg_id)
        assert result.error == "KeyboardInterrupt", result
    finally:
        socket.close()

    code, _ = await server.request("POST", f"/api/kernels/{kernel_id}/restart")
    assert code == 200
    after = await first_cell(server, kernel_id)
    assert after["cwd"] == str(notebooks / "a")
    assert after["session"] == str(notebooks / "a" / "two.ipynb")
    assert after["count"] == 2 and "x" not in after["names"]

    code, _ = await server.request("DELETE", f"/api/kernels/{kernel_id}")
    assert code == 204
    code, kernels = await server.request("GET", "/api/kernels")
    assert code == 200 and kernels == [], kernels


async def test_server_stop_leaves_no_warm_kernel(server: ServerProcess) -> None:
    await until_pool(server, "warmvenv", 1)
    assert kernel_processes(server), "the warm kernel's process is not found"
    code, kernels = await server.request("GET", "/api/kernels")
    assert code == 200 and kernels == [], "a warm kernel must not be listed before hand-out"
    server.stop()
    for _ in range(50):
        if not kernel_processes(server):
            break
        await asyncio.sleep(0.2)
    assert kernel_processes(server) == []


async def test_another_kernelspec_starts_cold_and_leaves_the_pool(
    server: ServerProcess,
) -> None:
    await until_pool(server, "warmvenv", 1)
    code, kernel = await server.request("POST", "/api/kernels", {"name": "python3"})
    assert code == 201, kernel
    pools: list[dict[str, Any]] = await pool_status(server)
    assert pools[0]["handed_out"] == 0 and pools[0]["ready"] == 1, pools


async def test_a_pool_that_cannot_start_backs_off_and_says_why(
    notebooks: Path, venvs: Path, server_processes: Callable[..., ServerProcess]
) -> None:
    broken = {"warmvenv": {"count": 1, "preimport": ["gpuenv_no_such_module"]}}
    server = server_processes(notebooks, {"venv_dirs": [str(venvs)], "warm_kernels": broken})
    deadline = asyncio.get_running_loop().time() + 60
    pools: list[dict[str, Any]] = []
    while asyncio.get_running_loop().time() < deadline:
        pools = await pool_status(server)
        if pools and pools[0]["failures"] >= 1:
            break
        await asyncio.sleep(0.3)
    (pool,) = pools
    assert pool["ready"] == 0 and pool["failures"] >= 1, pool
    assert "ModuleNotFoundError" in pool["last_error"], pool
    assert "next try in" in pool["last_error"], pool
    # The environment itself still starts cold.
    code, kernel = await server.request("POST", "/api/kernels", {"name": await kernel_name(server)})
    assert code == 201, kernel


async def test_warm_kernels_older_than_the_limit_are_replaced(
    notebooks: Path, venvs: Path, server_processes: Callable[..., ServerProcess]
) -> None:
    settings = {"venv_dirs": [str(venvs)], "warm_kernels": WARM, "warm_kernel_max_age": 1.0}
    server = server_processes(notebooks, settings)
    deadline = asyncio.get_running_loop().time() + 90
    pools: list[dict[str, Any]] = []
    while asyncio.get_running_loop().time() < deadline:
        pools = await pool_status(server)
        if pools and pools[0].get("replaced", 0) >= 1 and pools[0]["ready"] == 1:
            break
        await asyncio.sleep(0.3)
    (pool,) = pools
    assert pool["replaced"] >= 1 and pool["ready"] == 1, pool


async def test_swarm_mode_refuses_warm_kernels_at_start_and_says_why(
    notebooks: Path, venvs: Path, server_processes: Callable[..., ServerProcess]
) -> None:
    settings = {"venv_dirs": [str(venvs)], "warm_kernels": WARM, "scheduler": "swarm"}
    server = server_processes(notebooks, settings)
    code, status = await server.request("GET", "/gpuenv/api/status")
    assert code == 200, status
    refused = status["warm_kernels"]["refused"]
    assert "not available with Swarm" in refused and status["warm_kernels"]["pools"] == []
    assert refused in server.log_text()


async def test_a_dead_warm_kernel_is_replaced_and_a_dead_handed_out_one_restarts_in_place(
    server: ServerProcess, notebooks: Path
) -> None:
    await until_pool(server, "warmvenv", 1)
    (warm_pid,) = kernel_processes(server)
    os.kill(warm_pid, signal.SIGKILL)
    deadline = asyncio.get_running_loop().time() + 60
    pool: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        (pool,) = await pool_status(server)
        if pool["replaced"] >= 1 and pool["ready"] == 1:
            break
        await asyncio.sleep(0.3)
    assert pool["replaced"] >= 1 and pool["ready"] == 1, pool
    assert warm_pid not in kernel_processes(server)

    kernel_id = await start_session(server, "b/three.ipynb", await kernel_name(server))
    socket = await server.channels(kernel_id)
    try:
        pid = int((await socket.run("import os; print(os.getpid())")).text)
    finally:
        socket.close()
    os.kill(pid, signal.SIGKILL)  # jupyter_client's restarter brings it back, in place
    deadline = asyncio.get_running_loop().time() + 60
    seen: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        try:
            seen = await first_cell(server, kernel_id)
        except (AssertionError, ConnectionError, TimeoutError):
            await asyncio.sleep(0.5)
            continue
        break
    assert seen.get("cwd") == str(notebooks / "b"), seen
    assert seen["session"] == str(notebooks / "b" / "three.ipynb")
