"""Start a container kernel from a writable copy of its read-only connection file.

ipykernel (>= 7.4) rewrites its connection file when the file holds CurveZMQ keys, and
a container kernel's connection file is mounted read-only. The provisioner then starts
``python -m jupyter_gpuenv_kernel.connection_copy SOURCE TARGET -- ARGV...``: the file is
copied to TARGET (mode 0600, in the container's private tmpfs, gone with the container)
and ARGV runs as this process, so the kernel keeps its pid and docker-init's signals.
When ARGV is this interpreter running a module (``python -m ipykernel_launcher ...``),
the module runs in this interpreter, as ``-m`` would run it: a second interpreter start
would only delay the kernel. Nothing of the file's content is printed.
"""

from __future__ import annotations

import os
import runpy
import sys


def copy_private(source: str, target: str) -> None:
    """``source``'s bytes into a new file ``target`` readable by this user only."""
    with open(source, "rb") as f:
        data = f.read()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: connection_copy SOURCE TARGET -- COMMAND...\n")
        return 2
    source, target, command = argv[0], argv[1], argv[3:]
    try:
        copy_private(source, target)
    except OSError as err:
        sys.stderr.write(
            f"jupyter-gpuenv: cannot copy the connection file to {target}: {err.strerror}\n"
        )
        return 1
    module = in_process_module(command)
    if module is not None:
        sys.argv = [module, *command[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(command[0], command)
    return 1  # not reached


def in_process_module(command: list[str]) -> str | None:
    """The module of ``PYTHON -m MODULE ...`` when PYTHON is this interpreter, else None."""
    if len(command) < 3 or command[1] != "-m" or not sys.executable:
        return None
    try:
        same = os.path.samefile(command[0], sys.executable)
    except OSError:
        return None
    return command[2] if same else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
