"""Which kernel of this machine runs a notebook, from the environment record it carries.

The server's ``GET /gpuenv/api/resolve`` and ``jupyter gpuenv resolve`` answer the same:
only environments that can start a kernel (:func:`has_kernel`) are candidates, matched by
the rules of environments/notebook_record.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..environments.fingerprint import environment_fingerprint
from ..environments.model import Environment
from ..environments.notebook_record import (
    METADATA_KEY,
    Match,
    NotebookRecord,
    find_match,
    mismatch,
    missing_text,
)
from ..errors import BadRequest, EnvironmentNotFound
from .kernelspecs import has_kernel


class NoMatchingEnvironment(EnvironmentNotFound):
    """The notebook's record names an environment this machine does not have."""


@dataclass
class Resolution:
    """A notebook's record and the environment chosen for it here."""

    record: NotebookRecord
    match: Match

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record.to_json(),
            **self.match.to_json(),
            "mismatch": mismatch(self.record, self.match.environment),
        }

    def kernelspec(self) -> dict[str, str]:
        """``metadata.kernelspec`` that makes jupyter execute / papermill use this kernel."""
        env = self.match.environment
        return {"name": env.kernel_name, "display_name": env.display_name, "language": "python"}


def notebook_record(metadata: object) -> NotebookRecord:
    """The record in a notebook's ``metadata``; BadRequest when it has none."""
    raw = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    record = NotebookRecord.from_json(raw)
    if record is None:
        reason = "has no" if raw is None else "has an unreadable"
        raise BadRequest(
            f"the notebook {reason} metadata.{METADATA_KEY} record: save it once from "
            "JupyterLab (or any client of a gpuenv server) while a gpuenv kernel runs for it"
        )
    return record


def resolve_record(record: NotebookRecord, environments: Iterable[Environment]) -> Resolution:
    """The best environment for ``record``, or :class:`NoMatchingEnvironment` saying why."""
    runnable = [env for env in environments if has_kernel(env)]
    match = find_match(record, runnable, environment_fingerprint)
    if match is None:
        raise NoMatchingEnvironment(missing_text(record))
    return Resolution(record, match)
