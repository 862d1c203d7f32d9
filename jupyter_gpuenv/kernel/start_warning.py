"""The doctor's warning for a kernel started although the doctor found an error.

The provisioner passes it in ``JUPYTER_GPUENV_START_WARNING`` (only when the admin set
``c.GpuEnv.block_incompatible = False``); it is written to stderr before the first cell
runs, so it is the first thing the notebook shows.
"""

from __future__ import annotations

import os
import sys
from typing import Any

START_WARNING_VARIABLE = "JUPYTER_GPUENV_START_WARNING"


def show_with_first_cell(ipython: Any, environ: Any = None) -> None:
    """Register a one-shot ``pre_run_cell`` hook printing the warning, if there is one."""
    message = (os.environ if environ is None else environ).get(START_WARNING_VARIABLE)
    events = getattr(ipython, "events", None)
    if not message or events is None:
        return

    def show(*_args: Any) -> None:
        events.unregister("pre_run_cell", show)
        sys.stderr.write(f"Warning from jupyter-gpuenv: {message}\n")
        sys.stderr.flush()

    events.register("pre_run_cell", show)
