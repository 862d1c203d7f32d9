"""Benchmark: server time of ``GET /gpuenv/api/gpus`` (goal: <= 5 ms).

A real Jupyter server runs in this process with the jupyter_gpuenv extension; its GPU
sampler is rebuilt around the fake NVML of the tests (this machine has no GPU) reporting
8 GPUs and 100 compute processes, whose PIDs are real processes of this machine where
there are enough. The figures:

* sample: one NVML read + PID attribution + per-user view + JSON encoding, done by the
  sampler thread every interval (off the request path);
* in-process handler path: ``await sampler.current()`` plus the body, as the handler
  does it, without HTTP;
* HTTP: requests over a keep-alive loopback connection; "server" is tornado's own
  request time (headers parsed -> response finished), "round trip" what the client saw.

The same for ``?history=600`` (a full 10-minute history, filled before measuring; the
series are built once per sample and shared) and for the Prometheus text of
``/gpuenv/metrics``. Each is compared with a baseline: a trivial handler of the same
class (same auth, same JSON error handling) answering ``{}``.
Run: ``python benchmarks/gpu_status.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_server.serverapp import ServerApp  # noqa: E402
from traitlets.config import Config  # noqa: E402

from jupyter_gpuenv.gpu.sampler import build_gpu_sampler  # noqa: E402
from jupyter_gpuenv.server.base import GpuEnvHandler, authorized, web  # noqa: E402
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess  # noqa: E402

GOAL_MS = 5.0
BASELINE_PATH = "/gpuenv/api/_benchmark_trivial"


class TrivialHandler(GpuEnvHandler):
    """The baseline: the same handler stack, no work."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({})


def fake_host(gpus: int, processes: int) -> FakeNvml:
    """``gpus`` GPUs sharing ``processes`` processes (real PIDs first, then made-up ones)."""
    real = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:processes]
    pids = real + [4_000_000 + i for i in range(processes - len(real))]
    return FakeNvml(
        [
            FakeGpu(
                name="NVIDIA H100 80GB HBM3",
                memory_total=80 * 2**30,
                compute_capability=(9, 0),
                processes=[FakeProcess(pid, 2**30) for pid in pids[i::gpus]],
            )
            for i in range(gpus)
        ]
    )


def fill_history(sampler: Any, snapshot: Any) -> None:
    """A full window of past samples (2 s apart) before the sampler's own."""
    window = int(sampler.history.maxlen)
    newest = snapshot.sampled_at
    for i in range(window, 0, -1):
        past = copy.copy(snapshot)
        past.sampled_at = newest - 2.0 * i
        sampler.history.record(past)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"median {statistics.median(values) * 1e3:7.3f} ms  p95 {p95 * 1e3:7.3f} ms"


class KeepAliveClient:
    """A minimal HTTP/1.1 client on one connection (no per-request connect cost)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: token {self.token}\r\n\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(v) for k, _, v in (x.partition(":") for x in lines) if k.lower() == "content-length"
        )
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def run(args: argparse.Namespace) -> None:
    port, token = free_port(), secrets.token_hex(16)
    root = tempfile.mkdtemp(prefix="gpuenv-bench-")
    config = Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_gpuenv": True}},
            "IdentityProvider": {"token": token},
            "GpuEnv": {
                "conda_envs_dirs": [],
                "venv_dirs": [],
                "docker_images": {},
                "docker_label_discovery": False,
                "gpu_sample_interval": 2.0,
                "show_all_gpu_processes": True,
            },
        }
    )
    app = ServerApp.instance(
        config=config,
        port=port,
        port_retries=0,
        open_browser=False,
        root_dir=root,
        allow_root=True,
        log_level="WARN",
    )
    app.init_signal = lambda: None  # type: ignore[method-assign]
    app.initialize(argv=[], new_httpserver=True)
    app.start_app()
    server_times: dict[str, list[float]] = {}

    def record(handler: Any) -> None:
        server_times.setdefault(handler.request.uri, []).append(handler.request.request_time())

    app.web_app.settings["log_function"] = record
    app.web_app.add_handlers(".*$", [(BASELINE_PATH, TrivialHandler, {"name": "jupyter_gpuenv"})])
    state = app.web_app.settings["gpuenv"]
    state.gpu_sampler.stop()
    sampler = build_gpu_sampler(state.config, app, nvml=fake_host(args.gpus, args.processes))
    state.gpu_sampler = sampler
    client = KeepAliveClient(port, token)
    try:
        first = await sampler.current(max_wait=30)
        assert first.snapshot.available, first.snapshot.reason
        count = len(first.snapshot.processes())
        print(f"fake NVML host: {args.gpus} GPUs, {count} processes; body {len(first.body)} bytes")
        print(f"sample (thread, off the request path): {sampler.sample_seconds * 1e3:.2f} ms")
        fill_history(sampler, first.snapshot)
        start = time.perf_counter()
        series = sampler.history._build(600.0)
        print(
            f"history of {len(series['timestamps'])} samples built once per sample: "
            f"{(time.perf_counter() - start) * 1e3:.2f} ms"
        )

        direct = []
        for _ in range(args.requests):
            start = time.perf_counter()
            sample = await sampler.current()
            _ = sample.body
            direct.append(time.perf_counter() - start)
        print(f"in-process handler path (sampler.current): {ms(direct)}")

        paths = {
            "gpus": "/gpuenv/api/gpus",
            "history": "/gpuenv/api/gpus?history=600",
            "metrics": "/gpuenv/metrics",
            "baseline": BASELINE_PATH,
        }
        round_trips: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.warmup):
            for path in paths.values():
                await client.get(path)
        server_times.clear()
        for _ in range(args.requests):
            for name, path in paths.items():
                start = time.perf_counter()
                status, _body = await client.get(path)
                round_trips[name].append(time.perf_counter() - start)
                assert status == 200, status
        for name, path in paths.items():
            print(f"HTTP {name:8s} server: {ms(server_times[path])}")
            print(f"HTTP {name:8s} round trip: {ms(round_trips[name])}")
        gpus_ms = statistics.median(server_times[paths["gpus"]]) * 1e3
        base_ms = statistics.median(server_times[paths["baseline"]]) * 1e3
        print(
            f"server time ratio gpus/baseline: {gpus_ms / base_ms:.2f}x; "
            f"goal <= {GOAL_MS} ms: {'met' if gpus_ms <= GOAL_MS else 'MISSED'} "
            f"({gpus_ms:.3f} ms)"
        )
        for name in ("history", "metrics"):
            median = statistics.median(server_times[paths[name]]) * 1e3
            print(f"server time ratio {name}/baseline: {median / base_ms:.2f}x ({median:.3f} ms)")
        naive_ms = (sampler.sample_seconds or 0) * 1e3 + base_ms
        print(
            f"sampling inside each request instead would cost ~{naive_ms:.1f} ms "
            f"({naive_ms / gpus_ms:.0f}x the shared sample)"
        )
    finally:
        client.close()
        await app._cleanup()
        app.http_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--processes", type=int, default=100)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
