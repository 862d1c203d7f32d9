"""The contents manager's pre-save hook that writes ``metadata.gpuenv`` into saved notebooks.

It runs for every client that saves through this server (JupyterLab, Notebook 7, VS Code
on a remote server) because it sits in the server, not in the front end. It is added to
the hooks of the server's contents manager (``register_pre_save_hook``), after an admin's
own ``pre_save_hook``, and it never fails a save: whatever goes wrong is logged and the
notebook is written as the client sent it.

- A gpuenv kernel runs for the notebook's path (its session): the record of that
  kernel's environment is written (unchanged when the content is the same, so saving
  again does not churn the file).
- No kernel runs for it: a record already in the file is kept when the client's model
  has none (a front end that never loaded it must not drop it).
- Another kernel runs for it: the model is saved as sent.

The record carries the environment's ``--no-builds`` environment.yml (or an image's
digest) when ``c.GpuEnv.notebook_record_spec`` allows (environments/record_spec.py), so
``jupyter gpuenv restore`` can rebuild it where it is missing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from typing import Any

from ..environments.fingerprint import environment_fingerprint
from ..environments.model import KERNEL_NAME_PREFIX, Environment
from ..environments.notebook_record import METADATA_KEY, build_record, same_recorded_content
from ..environments.record_spec import RecordSpecs
from ..kernel.gpu_snapshot import GpuSnapshot
from .state import ServerState

NO_KERNEL = object()
MAX_EXISTING_BYTES = 64 * 1024 * 1024


class NotebookRecordHook:
    """``hook(model=..., path=..., contents_manager=...)`` as jupyter_server calls it."""

    __name__ = "gpuenv_notebook_record"

    def __init__(self, state: ServerState, log: logging.Logger) -> None:
        self.state = state
        self.log = log
        catalog = state.catalog
        self.specs = RecordSpecs(catalog.config, catalog.sources.docker_client)

    def __call__(self, model: dict[str, Any], path: str, contents_manager: Any, **_: Any) -> None:
        try:
            self.record(model, path, contents_manager)
        except Exception:  # a broken record must never lose the user's notebook
            self.log.warning("gpuenv: no environment record for %s", path, exc_info=True)

    def record(self, model: dict[str, Any], path: str, contents_manager: Any) -> None:
        content = model.get("content")
        if model.get("type") != "notebook" or not isinstance(content, dict):
            return
        metadata = content.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            return
        kernel_id = self.kernel_for(path)
        if kernel_id is None:
            if METADATA_KEY not in metadata:
                kept = existing_record(contents_manager, path)
                if kept is not None:
                    metadata[METADATA_KEY] = kept
            return
        env = self.environment_of(kernel_id)
        if env is None:
            return
        fingerprint = environment_fingerprint(env)
        record = build_record(
            env,
            fingerprint,
            self.gpus_of(kernel_id),
            spec=self.specs.spec(env, fingerprint),
            image_digest=self.specs.image_digest(env),
        )
        if not same_recorded_content(metadata.get(METADATA_KEY), record):
            metadata[METADATA_KEY] = record.to_json()

    def kernel_for(self, path: str) -> str | None:
        """The kernel of the session open on ``path`` (the session table is in memory)."""
        sessions = getattr(self.state.server, "session_manager", None)
        cursor = getattr(sessions, "cursor", None)
        if cursor is None:
            return None
        try:
            relative = path.strip("/")
            rows = cursor.execute(
                "SELECT kernel_id FROM session WHERE path=? OR path=?", (relative, "/" + relative)
            ).fetchall()
        except sqlite3.Error:
            return None
        kernels = self.state.server.kernel_manager
        for row in rows:
            kernel_id = row[0]
            if kernel_id and kernel_id in kernels:
                return str(kernel_id)
        return None

    def environment_of(self, kernel_id: str) -> Environment | None:
        """The catalog entry of a kernel: its provisioner's environment id, else its name."""
        manager = self.state.server.kernel_manager.get_kernel(kernel_id)
        env_id = getattr(getattr(manager, "provisioner", None), "environment_id", None)
        kernel_name = str(getattr(manager, "kernel_name", "") or "")
        if not env_id and kernel_name.startswith(KERNEL_NAME_PREFIX):
            env_id = kernel_name[len(KERNEL_NAME_PREFIX) :]
        if not env_id:
            return None
        for env in self.state.catalog.cached_environments():
            if env.id == env_id:
                return env
        return None

    def gpus_of(self, kernel_id: str) -> list[str]:
        sample = self.state.gpu_sampler.latest()
        return gpus_used_by(sample.snapshot, kernel_id) if sample is not None else []


def gpus_used_by(snapshot: GpuSnapshot, kernel_id: str) -> list[str]:
    """Names of the GPUs (and MIG devices) that processes of ``kernel_id`` run on."""
    names: list[str] = []
    for gpu in snapshot.gpus:
        for process in gpu.processes:
            if process.kernel_id != kernel_id:
                continue
            mig = [m for m in gpu.mig_devices if m.uuid and m.uuid == process.mig_device_uuid]
            name = (mig[0].name if mig else None) or gpu.name or f"GPU {gpu.index}"
            names.append(name)
    return list(dict.fromkeys(names))


def existing_record(contents_manager: Any, path: str) -> dict[str, Any] | None:
    """``metadata.gpuenv`` of the notebook as it is on disk now, if it has one."""
    os_path_of = getattr(contents_manager, "_get_os_path", None)
    if os_path_of is None:
        return None
    try:
        with open(os_path_of(path), encoding="utf-8") as handle:
            text = handle.read(MAX_EXISTING_BYTES)
        data = json.loads(text)
    except (OSError, ValueError):
        return None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    record = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return record if isinstance(record, dict) else None


def install_notebook_hook(
    contents_manager: Any, hook: NotebookRecordHook, log: logging.Logger
) -> bool:
    """Add ``hook`` to the contents manager's pre-save hooks (an admin's own one stays)."""
    register = getattr(contents_manager, "register_pre_save_hook", None)
    if register is None:
        log.warning(
            "gpuenv: %s has no register_pre_save_hook; notebooks are saved without "
            "their environment record",
            type(contents_manager).__name__,
        )
        return False
    existing: Iterable[Any] = getattr(contents_manager, "_pre_save_hooks", None) or []
    if any(isinstance(h, NotebookRecordHook) for h in existing):
        return True
    register(hook)
    return True
