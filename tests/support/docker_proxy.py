"""A Docker API socket the tests can take away: a unix-socket proxy to the real engine.

Pointing a server's ``c.GpuEnv.docker_host`` here and stopping the proxy is a Docker
outage as the server sees it (connection refused, then the socket gone), while the
engine and its containers run on for everybody else on the machine. Starting it again
on the same path is the daemon coming back.

While the file :attr:`DockerProxy.hold` exists, a request to start a container waits
before it reaches the engine, and the file :attr:`DockerProxy.held` says one is waiting:
a test can change the host between a container's creation and its start.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"


class DockerProxy:
    """``start()``/``stop()`` a forwarding process listening on ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"unix://{self.path}"

    @property
    def hold(self) -> Path:
        return self.path.with_name(self.path.name + ".hold")

    @property
    def held(self) -> Path:
        return self.path.with_name(self.path.name + ".held")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.path), ENGINE_SOCKET],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Docker proxy did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None
        for path in (self.path, self.hold, self.held):
            path.unlink(missing_ok=True)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: Path | None = None
) -> None:
    try:
        while data := await reader.read(65536):
            if hold is not None and _START.search(data):
                await _wait_while(hold)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


_START = re.compile(rb"^POST /[^ ]*containers/[^/ ]+/start[ ?]", re.MULTILINE)


async def _wait_while(hold: Path) -> None:
    """Until ``hold`` is gone, with ``<name>.held`` present meanwhile."""
    if not hold.exists():
        return
    held = hold.with_name(hold.name.removesuffix(".hold") + ".held")
    held.touch()
    try:
        while hold.exists():
            await asyncio.sleep(0.02)
    finally:
        held.unlink(missing_ok=True)


async def _serve(listen: str, target: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(target)
        except OSError:
            writer.close()
            return
        hold = Path(listen + ".hold")
        await asyncio.gather(_pipe(reader, up_writer, hold), _pipe(up_reader, writer))

    server = await asyncio.start_unix_server(handle, path=listen)
    os.chmod(listen, 0o666)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))
