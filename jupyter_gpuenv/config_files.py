"""Read jupyter_server's configuration files outside a running server."""

from __future__ import annotations

import os

from jupyter_core.paths import jupyter_config_path
from traitlets.config import Config
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader


def load_server_config(config_file: str | None = None) -> Config:
    """Merge jupyter_server_config.{py,json} from the Jupyter config path.

    The precedence is jupyter_server's: system folders first, the user's last, and in each
    folder the .json file after the .py one, so later files win; an explicit
    ``config_file`` wins over all of them. jupyter_server_config.d/ drop-ins are not read:
    the server takes only the extension switches from them, so settings there would
    apply here and not in the server.
    """
    config = Config()
    for folder in reversed(jupyter_config_path()):
        for name in ("jupyter_server_config.py", "jupyter_server_config.json"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                config.merge(_load_file(path))
    if config_file:
        config.merge(_load_file(os.path.abspath(config_file)))
    return config


def _load_file(path: str) -> Config:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    folder, name = os.path.split(path)
    loader_cls = JSONFileConfigLoader if name.endswith(".json") else PyFileConfigLoader
    return loader_cls(name, path=folder).load_config()
