"""Warm vs cold kernels through a real server (issue 28: warm kernels).

Goals: from ``POST /api/kernels`` to a ``kernel_info_reply`` on the kernel's websocket,
warm <= 0.15 s median and <= 0.25 x cold; with ``preimport: ["torch"]``, the time from
the start request to the end of a first cell ``import torch; torch.zeros(1)``, warm
<= 0.1 x cold.

Two ``jupyter server`` processes serve the same environment, one with
``c.GpuEnv.warm_kernels`` and one without; runs alternate between them. Before a warm
run the pool is waited for (not timed): the benchmark measures a hand-out, not a refill.

* ``--env venv`` (default): a venv with ipykernel (LocalEnvProvisioner);
* ``--env docker``: the python-kernel test image (DockerProvisioner, this engine);
* ``--env torch``: the torch-cpu test image (real CPU PyTorch), preimport torch, and the
  first-cell time as well.

Docker servers run as a throw-away system user (warm Docker kernels need a server that
is not root), so those variants need a root run. Run:
``python benchmarks/warm_kernels.py [--env venv|docker|torch] [--runs 9]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from tests.provisioning.server_process import (  # noqa: E402
    ServerProcess,
    make_shared_dir,
    start_server,
)
from tests.provisioning.warm_support import until_pool  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402
from tests.support.system_user import system_user  # noqa: E402
from tests.support.venvs import make_venv  # noqa: E402

FIRST_CELL = "import torch; torch.zeros(1)"


def message(msg_type: str, content: dict[str, Any], channel: str = "shell") -> dict[str, Any]:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "bench",
              "session": uuid.uuid4().hex, "date": "", "version": "5.3"}  # fmt: skip
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content,
            "channel": channel, "buffers": []}  # fmt: skip


async def reply_to(conn: Any, msg: dict[str, Any], reply_type: str) -> None:
    conn.write_message(json.dumps(msg))
    while True:
        raw = await asyncio.wait_for(conn.read_message(), 300)
        if raw is None:
            raise ConnectionError("the kernel's websocket closed")
        got = json.loads(raw)
        parent = got.get("parent_header", {}).get("msg_id")
        if parent == msg["header"]["msg_id"] and got["header"]["msg_type"] == reply_type:
            return


async def one_start(server: ServerProcess, kernel: str, cell: bool) -> tuple[float, float]:
    """Seconds to kernel_info_reply and (with ``cell``) to the first cell's reply."""
    started = time.perf_counter()
    code, model = await server.request("POST", "/api/kernels", {"name": kernel, "path": ""})
    if code != 201:
        raise RuntimeError(f"start failed ({code}): {model}")
    try:
        socket = await server.channels(model["id"])
        try:
            await reply_to(socket.conn, message("kernel_info_request", {}), "kernel_info_reply")
            ready = time.perf_counter() - started
            first = 0.0
            if cell:
                content = {"code": FIRST_CELL, "silent": False, "store_history": True,
                           "user_expressions": {}, "allow_stdin": False}  # fmt: skip
                await reply_to(socket.conn, message("execute_request", content), "execute_reply")
                first = time.perf_counter() - started
        finally:
            socket.close()
    finally:
        await server.request("DELETE", f"/api/kernels/{model['id']}")
    return ready, first


def report(label: str, warm: list[float], cold: list[float], ratio_goal: float,
           absolute_goal: float | None = None) -> None:  # fmt: skip
    w, c = statistics.median(warm), statistics.median(cold)
    ratio = w / c
    verdicts = [f"ratio {ratio:.2f} ({'meets' if ratio <= ratio_goal else 'misses'} "
                f"the {ratio_goal} x goal)"]  # fmt: skip
    if absolute_goal is not None:
        verdict = "meets" if w <= absolute_goal else "misses"
        verdicts.append(f"{verdict} the {absolute_goal} s goal")
    print(
        f"{label}: warm median {w * 1000:.0f} ms (min {min(warm) * 1000:.0f}), "
        f"cold median {c * 1000:.0f} ms (min {min(cold) * 1000:.0f}); " + "; ".join(verdicts)
    )


async def kernel_of(server: ServerProcess, name: str) -> str:
    code, listing = await server.request("GET", "/gpuenv/api/environments")
    (env,) = [e for e in listing["environments"] if e["name"] == name]
    return str(env["kernel_name"])


async def bench(
    settings: dict[str, Any], name: str, root: Path, runs: int,
    preimport: list[str], uid: int | None, gid: int | None,
) -> None:  # fmt: skip
    pool = {name: {"count": 1, "preimport": preimport}}
    warm_server = start_server(root, {**settings, "warm_kernels": pool}, uid, gid)
    cold_server = start_server(root, settings, uid, gid)
    cell = bool(preimport)
    try:
        kernel = await kernel_of(warm_server, name)
        await until_pool(warm_server, name, 1, timeout=600)
        await one_start(cold_server, kernel, cell)  # warm-up: page cache, image layers
        timings: dict[str, list[tuple[float, float]]] = {"warm": [], "cold": []}
        for _ in range(runs):
            await until_pool(warm_server, name, 1, timeout=600)
            timings["warm"].append(await one_start(warm_server, kernel, cell))
            timings["cold"].append(await one_start(cold_server, kernel, cell))
        warm, cold = timings["warm"], timings["cold"]
        report(f"{name}: POST -> kernel_info_reply", [w[0] for w in warm],
               [c[0] for c in cold], 0.25, 0.15)  # fmt: skip
        if cell:
            report(f"{name}: POST -> first cell '{FIRST_CELL}' done", [w[1] for w in warm],
                   [c[1] for c in cold], 0.1)  # fmt: skip
    finally:
        warm_server.stop()
        cold_server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=["venv", "docker", "torch"], default="venv")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; environment: {args.env}; runs per variant: {args.runs}")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpuenv-bench-")))
        if args.env == "venv":
            venv = make_venv(tmp / "venvs" / "benchvenv")
            root = make_shared_dir("gpuenv-bench-root-", None, None)
            settings = {"venv_dirs": [str(venv.parent)]}
            await bench(settings, "benchvenv", root, args.runs, [], None, None)
            return
        image = ensure_image(docker.from_env(), "torch-cpu" if args.env == "torch" else
                             "python-kernel")  # fmt: skip
        user = stack.enter_context(system_user())
        root = make_shared_dir("gpuenv-bench-root-", user.uid, user.gid)
        preimport = ["torch"] if args.env == "torch" else []
        print(f"image: {image}; server user uid {user.uid}")
        settings = {"docker_images": {"bench": image}}
        await bench(settings, "bench", root, args.runs, preimport, user.uid, user.gid)


if __name__ == "__main__":
    asyncio.run(main())
