"""Read jupyter_server's configuration files outside a running server."""

from __future__ import annotations

import os

from jupyter_core.paths import jupyter_config_path
from traitlets.config import Config
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader


def load_server_config(config_file: str | None = None) -> Config:
    """Merge jupyter_server_config.{json,py} (and .d folders) from the Jupyter config path.

    The order mirrors jupyter_server: system paths first, user paths last, so user files
    win; an explicit ``config_file`` wins over all of them.
    """
    config = Config()
    for folder in reversed(jupyter_config_path()):
        config.merge(_load_folder(folder))
    if config_file:
        config.merge(_load_file(os.path.abspath(config_file)))
    return config


def _load_folder(folder: str) -> Config:
    config = Config()
    drop_in = os.path.join(folder, "jupyter_server_config.d")
    if os.path.isdir(drop_in):
        for name in sorted(os.listdir(drop_in)):
            if name.endswith(".json"):
                config.merge(_load_file(os.path.join(drop_in, name)))
    for name in ("jupyter_server_config.json", "jupyter_server_config.py"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            config.merge(_load_file(path))
    return config


def _load_file(path: str) -> Config:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    folder, name = os.path.split(path)
    loader_cls = JSONFileConfigLoader if name.endswith(".json") else PyFileConfigLoader
    return loader_cls(name, path=folder).load_config()
