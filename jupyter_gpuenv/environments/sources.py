"""The three sources behind the catalog, asked for candidates without running anything.

Local sources are file stats only (cheap, asked on every scan). Docker is asked through
the shared client of the configured engine; when it cannot be reached the configured
entries come back with the reason. ``conda env list --json`` runs only when a conda CLI exists, in a
thread of its own at most every few minutes, and only adds prefixes to later scans.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..broker_client import BrokerClient, BrokerError
from ..docker.client import docker_client, forget, unreachable_message
from ..errors import DockerUnavailable
from . import conda, docker_images, venv
from .candidates import Candidate, unreadable_candidate, unreadable_in
from .conda_config import CondaSettings, conda_cli, default_conda_envs_dirs
from .model import Environment, EnvironmentKind
from .pytorch_images import ImageConfigs
from .snapshot import environment_from_json

CONDA_CLI_INTERVAL = 300.0


class Sources:
    """Candidates from conda prefixes, venvs and Docker images for one configuration."""

    def __init__(
        self,
        config: Any,
        on_new_prefixes: Callable[[], None] | None = None,
        image_configs: ImageConfigs | None = None,
    ) -> None:
        self.config = config
        self.on_new_prefixes = on_new_prefixes
        self._cli_prefixes: list[Path] = []
        self._cli_checked = -CONDA_CLI_INTERVAL
        self._cli_running = False
        self.image_configs = image_configs or ImageConfigs()

    def config_key(self) -> str:
        """The settings that decide what is listed (a saved listing is only valid for them)."""
        names = (
            "conda_envs_dirs",
            "venv_dirs",
            "pixi_project_dirs",
            "docker_images",
            "rejected_docker_images",
            "docker_label_discovery",
            "docker_discover_pytorch_images",
            "restrict_to_configured_images",
            "docker_host",
            "broker_url",
        )
        values = {n: getattr(self.config, n) for n in names}
        return json.dumps(values, sort_keys=True, default=str)

    def local_candidates(self) -> list[Candidate]:
        """Conda envs (venv_dirs too: conda-meta wins) and venvs, by file stats."""
        settings = CondaSettings.load()
        configured = self.config.conda_envs_dirs
        conda_dirs = default_conda_envs_dirs() if configured is None else configured
        dirs = [*conda_dirs, *self.config.venv_dirs]
        prefixes = conda.conda_prefixes(dirs, settings, self._cli_prefixes)
        found = [
            _described("conda", p, lambda p: conda.conda_candidate(p, settings)) for p in prefixes
        ]
        found += [
            _described("venv", p, venv.venv_candidate)
            for p in venv.venv_prefixes(self.config.venv_dirs)
        ]
        known = {c.discriminator for c in found}
        for project, prefix in conda.pixi_prefixes(self.config.pixi_project_dirs):
            if str(prefix) not in known:
                describe = functools.partial(conda.pixi_candidate, project, settings=settings)
                found.append(_described("conda", prefix, describe))
                known.add(str(prefix))
        found += [
            unreadable_candidate("conda", p, None)
            for p in unreadable_in(conda_dirs)
            if str(p) not in known
        ]
        return found

    def docker_candidates(self) -> tuple[list[Candidate], str | None]:
        """Image candidates, and the reason when the engine could not be asked."""
        if getattr(self.config, "broker_url", ""):
            return [], None  # the broker lists them (brokered_environments)
        configured = self.config.docker_images or self.config.rejected_docker_images
        if not configured and not docker_images.local_discovery(self.config):
            return [], None
        try:
            client = self.docker_client()
            found = docker_images.image_candidates(client, self.config, self.image_configs)
            return found, None
        except DockerUnavailable as exc:
            reason = exc.message
        except Exception as exc:  # the engine went away mid-listing
            self.reconnect_docker()
            reason = unreachable_message(exc, self.config.docker_host or None)
        return docker_images.unreachable_candidates(self.config, reason), reason

    def brokered_environments(self) -> tuple[list[Environment], str | None]:
        """The Docker environments the kernel broker offers this server's user, already
        probed by the broker; the reason when it cannot be asked."""
        url = getattr(self.config, "broker_url", "")
        if not url:
            return [], None
        try:
            items = BrokerClient(url).environments()
        except BrokerError as err:
            return [], err.message
        found = [environment_from_json(item) for item in items]
        return [env for env in found if env is not None and env.kind == "docker"], None

    def docker_client(self, ping: bool = True) -> Any:
        """The shared client of the configured engine; ``ping`` checks it still answers."""
        return docker_client(self.config.docker_host or None, ping=ping)

    def reconnect_docker(self) -> None:
        """Forget the client (a refresh follows DOCKER_HOST changes and daemon restarts)."""
        forget(self.config.docker_host or None)

    def close(self) -> None:
        """Nothing of its own to close: Docker clients are shared per process."""

    def list_conda_cli(self, force: bool, known_prefixes: set[str]) -> None:
        """Start ``conda env list --json`` in the background when a CLI exists and is due."""
        cli = conda_cli()
        now = time.monotonic()
        if cli is None or self._cli_running:
            return
        if not force and now - self._cli_checked < CONDA_CLI_INTERVAL:
            return
        self._cli_running = True
        self._cli_checked = now

        def work() -> None:
            try:
                found = conda.conda_env_list(cli)
            finally:
                self._cli_running = False
            self._cli_prefixes = found
            if self.on_new_prefixes and any(str(p) not in known_prefixes for p in found):
                self.on_new_prefixes()

        threading.Thread(target=work, name="gpuenv-conda-env-list", daemon=True).start()


def _described(
    kind: EnvironmentKind, prefix: Path, describe: Callable[[Path], Candidate]
) -> Candidate:
    """``describe(prefix)``; a file the server's user cannot read makes a problem entry."""
    try:
        return describe(prefix)
    except OSError as err:
        return unreadable_candidate(kind, prefix, err)
