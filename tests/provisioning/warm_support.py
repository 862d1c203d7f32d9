"""What the warm kernel tests share: waiting for a pool, asking a kernel about itself."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.provisioning.server_process import ServerProcess

# The first cell a user runs: where the kernel is, who it runs as, what it remembers.
FIRST_CELL = """\
import json, os, sys
print(json.dumps({
    "cwd": os.getcwd(),
    "uid": os.getuid(),
    "session": os.environ.get("JPY_SESSION_NAME"),
    "dunder_session": globals().get("__session__"),
    "count": get_ipython().execution_count,
    "inputs": list(In),
    "history": [[n, src] for _, n, src in get_ipython().history_manager.get_range()],
    "preimported": "colorsys" in sys.modules,
    "names": sorted(k for k in globals() if not k.startswith("_")),
}))
"""


async def pool_status(server: ServerProcess) -> list[dict[str, Any]]:
    code, status = await server.request("GET", "/gpuenv/api/status")
    assert code == 200, status
    return list((status.get("warm_kernels") or {}).get("pools") or [])


async def until_pool(
    server: ServerProcess, environment: str, ready: int, timeout: float = 120.0
) -> dict[str, Any]:
    """The pool of ``environment`` once it has ``ready`` kernels ready; fails on timeout."""
    deadline = time.monotonic() + timeout
    pools: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pools = await pool_status(server)
        for pool in pools:
            if pool["environment"] == environment and pool["ready"] >= ready:
                return pool
        await asyncio.sleep(0.3)
    raise AssertionError(f"pool {environment} never had {ready} ready: {pools}")


async def first_cell(server: ServerProcess, kernel_id: str) -> dict[str, Any]:
    socket = await server.channels(kernel_id)
    try:
        result = await socket.run(FIRST_CELL)
    finally:
        socket.close()
    return dict(json.loads(result.text))


async def start_session(server: ServerProcess, path: str, kernel_name: str) -> str:
    body = {"path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook",
            "kernel": {"name": kernel_name}}  # fmt: skip
    code, session = await server.request("POST", "/api/sessions", body)
    assert code == 201, session
    return str(session["kernel"]["id"])
