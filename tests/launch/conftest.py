"""Kernels started the way clients that ignore kernel provisioners start them.

VS Code's local kernels (and other simple clients) write a connection file, run the
kernelspec's ``argv`` with ``{connection_file}`` substituted and the spec's ``env`` added,
treat that process as the kernel (SIGINT to interrupt, SIGTERM to stop) and talk to the
ports with a plain client. The specs are the on-disk ones ``jupyter gpuenv kernelspecs
install`` writes (``jupyter_setup`` of tests/clients).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from tests.clients.conftest import JupyterSetup, jupyter_setup  # noqa: F401 (fixture)

START_TIMEOUT = 300


@dataclass
class ArgvKernel:
    """The launcher process a client spawned, and the client connected to its ports."""

    process: subprocess.Popen[bytes]
    client: BlockingKernelClient
    connection_file: Path
    log_file: Path
    # The (device, inode) of the file the client wrote: the same file while it runs.
    file_identity: tuple[int, int] = (0, 0)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def run(self, code: str, timeout: float = 120) -> tuple[dict[str, Any], str]:
        """Execute ``code``; returns the reply's content and what it printed."""
        printed: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])

        reply = self.client.execute_interactive(code, output_hook=collect, timeout=timeout)
        return reply["content"], "".join(printed)

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def wait_exit(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the launcher did not exit:\n{self.log()}") from None

    def close(self) -> None:
        self.client.stop_channels()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def spawn_argv(
    setup: JupyterSetup, kernel_name: str, curve: bool = False
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Write a connection file and run the spec's argv as such a client does.

    ``curve``: the file carries CurveZMQ keys, as a client that encrypts writes it.
    """
    spec = setup.kernels[kernel_name]
    connection_file = setup.root / f"kernel-argv-{uuid.uuid4().hex[:8]}.json"
    public, secret = zmq.curve_keypair() if curve else (None, None)
    write_connection_file(
        str(connection_file),
        ip="127.0.0.1",
        key=uuid.uuid4().hex.encode(),
        kernel_name="",
        curve_publickey=public,
        curve_secretkey=secret,
    )
    argv = [arg.replace("{connection_file}", str(connection_file)) for arg in spec["argv"]]
    log_file = connection_file.with_suffix(".log")
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env={**setup.env, **spec.get("env", {})},
            cwd=setup.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, connection_file, log_file


def start_from_argv(setup: JupyterSetup, kernel_name: str, curve: bool = False) -> ArgvKernel:
    """The kernel of ``kernel_name`` started from its argv, with a client that is ready."""
    process, connection_file, log_file = spawn_argv(setup, kernel_name, curve)
    # Taken while the launcher still imports: nothing has touched the file yet.
    written = connection_file.stat()
    client = BlockingKernelClient()
    client.load_connection_file(str(connection_file))
    client.start_channels()
    kernel = ArgvKernel(
        process, client, connection_file, log_file, (written.st_dev, written.st_ino)
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            kernel.close()
            raise AssertionError(f"the launcher exited {process.returncode}:\n{kernel.log()}")
        try:
            client.wait_for_ready(timeout=5)
            return kernel
        except RuntimeError:
            if time.monotonic() > deadline:
                kernel.close()
                raise AssertionError(f"the kernel was not ready:\n{kernel.log()}") from None


def interrupt_running_cell(kernel: ArgvKernel) -> dict[str, Any]:
    """Start a cell that sleeps, SIGINT the launcher once it runs; returns the reply."""
    code = "import time\nprint('cell-running', flush=True)\ntime.sleep(600)"
    msg_id = kernel.client.execute(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            msg = kernel.client.get_iopub_msg(timeout=1)
        except Empty:
            continue
        if msg["msg_type"] == "stream" and "cell-running" in msg["content"]["text"]:
            break
    else:
        raise AssertionError("the cell never ran")
    kernel.signal(signal.SIGINT)
    while True:
        reply = kernel.client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]
