"""`jupyter gpuenv list` draws a progress bar on a terminal, and nothing extra when piped.

The first listing of slow venvs (their interpreters take seconds to start) runs under a
pseudo-terminal, as in a person's shell, and piped, as in a script.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.support.slow_work import slow_venv

BAR_TEXT = "Probing environments"


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    for index, seconds in enumerate((2, 3)):
        slow_venv(tmp_path / "venvs" / f"slow{index}", seconds)
    config = tmp_path / "jupyter_server_config.py"
    config.write_text(
        "c.GpuEnv.conda_envs_dirs = []\n"
        f"c.GpuEnv.venv_dirs = [{str(tmp_path / 'venvs')!r}]\n"
        "c.GpuEnv.docker_images = {}\n"
        "c.GpuEnv.docker_label_discovery = False\n"
        "c.GpuEnv.docker_discover_pytorch_images = False\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "MAMBA"))}
    env.update(
        HOME=str(tmp_path / "home"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_NO_CONFIG="1",
        TERM="xterm",
    )
    (tmp_path / "home").mkdir()
    return {"config": config, "env": env, "tmp": tmp_path}


def argv(setup: dict, *args: str) -> list[str]:
    command = shutil.which("jupyter-gpuenv")
    assert command, "the jupyter-gpuenv script is installed with the package"
    return [command, "--config", str(setup["config"]), "list", *args]


def cold(setup: dict, name: str) -> dict[str, str]:
    """An environment with an empty probe cache of its own: the listing probes."""
    return dict(setup["env"], JUPYTER_DATA_DIR=str(setup["tmp"] / f"data-{name}"))


def run_in_terminal(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; everything it drew."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(controller)
    return process.wait(timeout=30), output.decode(errors="replace")


def test_a_terminal_gets_a_progress_bar(setup) -> None:
    code, drawn = run_in_terminal(argv(setup), cold(setup, "tty"))
    assert code == 0, drawn
    assert BAR_TEXT in drawn and "0/2" in drawn and "2/2" in drawn, drawn
    # The table follows, with both environments.
    assert "slow0" in drawn and "slow1" in drawn


def test_piped_output_and_json_get_nothing_extra(setup) -> None:
    piped = subprocess.run(
        argv(setup), capture_output=True, text=True, env=cold(setup, "piped"), timeout=120
    )
    assert piped.returncode == 0, piped.stderr
    assert BAR_TEXT not in piped.stdout + piped.stderr
    assert "\r" not in piped.stdout + piped.stderr and "\x1b" not in piped.stdout
    assert piped.stdout.startswith("ID ") and "slow0" in piped.stdout
    # The same listing again, now from the cache: byte for byte the same.
    again = subprocess.run(
        argv(setup), capture_output=True, text=True, env=cold(setup, "piped"), timeout=120
    )
    assert again.stdout == piped.stdout
    # --json on a terminal: the document only, no bar.
    code, drawn = run_in_terminal(argv(setup, "--json"), cold(setup, "json"))
    assert code == 0 and BAR_TEXT not in drawn, drawn
    assert drawn.lstrip().startswith("{")
