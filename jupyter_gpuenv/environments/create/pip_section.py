"""The ``pip:`` section, installed by the new environment's own pip, as conda does it.

conda writes the section to a requirements file and runs ``python -m pip install -U -r``;
so do we, so its option lines (``--find-links``, ``--index-url``, ``--no-index``, ``-e``)
mean what pip makes of them and nothing is added: no index or link the file does not
name. Relative paths start at the environment.yml's folder (pip runs there).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .errors import CreateFailed
from .job import CreateJob
from .spec import EnvironmentSpec

TAIL_LINES = 15
STOP_CHECK_SECONDS = 0.2  # how soon a cancelled job's child is stopped
# The server's or CLI's own Python must not leak into the new environment's pip.
DROPPED_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


def pip_command(prefix: Path, requirements: Path) -> list[str]:
    """What conda runs for the section (``-U -r FILE``), with the environment's python."""
    return [
        str(prefix / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-U",
        "-r",
        str(requirements),
        "--exists-action=b",
        "--disable-pip-version-check",
        "--no-input",
    ]


def install_pip_section(spec: EnvironmentSpec, prefix: Path, job: CreateJob) -> None:
    """Run the section's pip; :class:`CreateFailed` with pip's last lines when it fails."""
    if not spec.pip:
        return
    python = prefix / "bin" / "python"
    if not os.path.exists(python):
        raise CreateFailed(
            "the pip: section needs a Python with pip in the environment; add python and pip "
            "to the dependencies"
        )
    job.step("pip", f"Installing {len(spec.pip_requirements)} pip requirements", None)
    environ = {k: v for k, v in os.environ.items() if k not in DROPPED_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="gpuenv-pip-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(spec.requirements_text(), encoding="utf-8")
        cwd = spec.base_dir if spec.base_dir and spec.base_dir.is_dir() else Path(tmp)
        tail = run_streaming(
            pip_command(prefix, requirements),
            environ,
            cwd,
            lambda line: job.advance(detail=line),
            lambda: job.interrupted,
        )
    if tail is not None:
        raise CreateFailed("pip could not install the pip: section:\n" + tail)


def run_streaming(
    argv: list[str],
    environ: dict[str, str],
    cwd: Path | None,
    on_line: Callable[[str], None],
    stop: Callable[[], bool] = lambda: False,
) -> str | None:
    """Run ``argv``, telling ``on_line`` each output line; None on success, else the tail.

    An interrupt (Ctrl-C) stops the child before it is passed on; so does ``stop()``
    turning true (a cancelled job), checked while the child runs, silent or not.
    """
    lines: list[str] = []
    ended = threading.Event()
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=environ,
        cwd=cwd,
    ) as child:

        def watch() -> None:
            while not ended.wait(STOP_CHECK_SECONDS):
                if stop():
                    child.terminate()
                    return

        threading.Thread(target=watch, name="gpuenv-create-stop", daemon=True).start()
        try:
            assert child.stdout is not None
            for line in child.stdout:
                text = line.rstrip()
                if text:
                    lines.append(text)
                    del lines[:-200]
                    on_line(text)
            code = child.wait()
            if stop():
                raise KeyboardInterrupt
        except BaseException:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
        finally:
            ended.set()
    return None if code == 0 else "\n".join(lines[-TAIL_LINES:]) or f"exit status {code}"
