"""Where conda keeps environments, read from conda's own configuration."""

from __future__ import annotations

import os


def default_conda_envs_dirs() -> list[str]:
    home = os.path.expanduser("~")
    return [p for p in (f"{home}/.conda/envs",) if os.path.isdir(p)]
