"""The kernel-side start step of CurveZMQ container kernels: copy, then become the kernel.

Run as a real process (``python -m``), as the container runs it: the copy is private
(0600, a new file), the command replaces the process (same pid), and a failure says why
without the file's content.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from jupyter_gpuenv import kernel
from jupyter_gpuenv.kernel import KERNEL_PACKAGE

KERNEL_SIDE = Path(kernel.__file__).resolve().parent
SHOW = (
    "import os, stat, sys; p = sys.argv[1]; "
    "print(os.getpid(), oct(stat.S_IMODE(os.stat(p).st_mode)), open(p).read())"
)


def run_step(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m jupyter_gpuenv_kernel.connection_copy ARGS`` from a shell that prints
    its pid first and execs, so the pid is that of the step (and of what it execs)."""
    side = tmp_path / "kernel-side"
    if not side.exists():
        side.mkdir()
        (side / KERNEL_PACKAGE).symlink_to(KERNEL_SIDE)
    argv = [sys.executable, "-m", f"{KERNEL_PACKAGE}.connection_copy", *args]
    return subprocess.run(
        ["/bin/sh", "-c", 'echo $$; exec "$@"', "sh", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(side)},
    )


def test_copies_privately_then_execs(tmp_path):
    source = tmp_path / "ro.json"
    source.write_text('{"curve_secretkey": "s3cret"}')
    source.chmod(0o400)
    target = tmp_path / "private" / "connection.json"
    target.parent.mkdir(mode=0o700)
    done = run_step(
        tmp_path, str(source), str(target), "--", sys.executable, "-c", SHOW, str(target)
    )
    assert done.returncode == 0, done.stderr
    pid, second = done.stdout.splitlines()
    exec_pid, mode, content = second.split(" ", 2)
    assert exec_pid == pid  # the same process, now the command
    assert mode == "0o600" and content == '{"curve_secretkey": "s3cret"}'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_an_existing_target_is_not_followed_or_replaced(tmp_path):
    source = tmp_path / "ro.json"
    source.write_text('{"curve_secretkey": "s3cret"}')
    elsewhere = tmp_path / "elsewhere"
    target = tmp_path / "connection.json"
    target.symlink_to(elsewhere)
    done = run_step(tmp_path, str(source), str(target), "--", sys.executable, "-c", "print('ran')")
    assert done.returncode == 1
    assert "cannot copy the connection file" in done.stderr and "s3cret" not in done.stderr
    assert "ran" not in done.stdout and not elsewhere.exists()
