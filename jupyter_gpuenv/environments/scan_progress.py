"""How far a catalog scan has come, and the environments it has probed so far.

A first listing probes every environment (a container per image, an interpreter per
prefix); that can take a while. The scan reports here as its probes finish, so a
listing can be answered at once with what is known ("probing 3 of 12 environments")
instead of after the whole scan, and the CLI can draw a progress bar.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from .candidates import Candidate, build_environment
from .model import Environment
from .snapshot import Snapshot

ScanState = Literal["idle", "discovering", "probing"]


@dataclass(frozen=True)
class ScanProgress:
    """A copy of a scan's progress at one moment; ``total`` is None while discovering."""

    state: ScanState
    probed: int = 0
    total: int | None = None
    started: float | None = None  # time.time()

    @property
    def message(self) -> str:
        if self.state == "discovering":
            return "looking for environments"
        if self.state == "probing":
            return f"probing {self.probed} of {self.total} environments"
        if self.total is not None:
            return f"idle (the last scan probed {self.probed} of {self.total} environments)"
        return "idle"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "probed": self.probed,
            "total": self.total,
            "message": self.message,
            "seconds": (
                None
                if self.started is None or self.state == "idle"
                else round(time.time() - self.started, 1)
            ),
        }


IDLE = ScanProgress("idle")


class ScanTracker:
    """The running scan: its candidates and their probe results as they complete."""

    def __init__(self) -> None:
        self.started = time.time()
        self._lock = threading.Lock()
        self._candidates: list[Candidate] | None = None
        self._results: dict[str, Future] = {}
        self._probed = 0

    def probing(self, candidates: list[Candidate], results: dict[str, Future]) -> None:
        """Discovery is over: these candidates, whose probes finish through ``results``."""
        with self._lock:
            self._candidates = list(candidates)
            self._results = dict(results)
            self._probed = 0
        for candidate in candidates:
            future = results.get(candidate.identity) if candidate.identity else None
            if future is None:
                self._one_probed()
            else:
                future.add_done_callback(lambda _f: self._one_probed())

    def _one_probed(self) -> None:
        with self._lock:
            self._probed += 1

    def progress(self) -> ScanProgress:
        with self._lock:
            if self._candidates is None:
                return ScanProgress("discovering", started=self.started)
            total = len(self._candidates)
            return ScanProgress("probing", min(self._probed, total), total, self.started)

    def ended(self) -> ScanProgress:
        """The scan is over: idle, with its count (nothing when it never got to probing)."""
        progress = self.progress()
        if progress.total is None:
            return IDLE
        return ScanProgress("idle", progress.probed, progress.total, self.started)

    def environments(self) -> list[Environment]:
        """The candidates probed so far, in listing order, without the doctor's notes."""
        with self._lock:
            candidates = list(self._candidates or [])
            results = dict(self._results)
        found = []
        for candidate in candidates:
            future = results.get(candidate.identity) if candidate.identity else None
            if future is not None and not future.done():
                continue
            probe = None
            if future is not None:
                if future.exception() is not None:
                    continue
                probe = future.result()
            found.append(build_environment(candidate, probe))
        return found


@dataclass(frozen=True)
class PartialListing:
    """A listing answered without waiting: ``complete`` once a scan has published one."""

    environments: list[Environment]
    complete: bool
    progress: ScanProgress
    snapshot: Snapshot | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)

    def listing_json(self) -> str:
        """``{"environments": [...], "problems": [...], "complete": ..., "scan": {...}}``."""
        extra = {"complete": self.complete, "scan": self.progress.to_json()}
        if self.snapshot is not None:
            # The published listing's JSON is made once per snapshot; only this is added.
            published = self.snapshot.listing_json().rstrip()
            return published[:-1] + ", " + json.dumps(extra)[1:]
        environments = [e.to_json() for e in self.environments]
        return json.dumps({"environments": environments, "problems": self.problems, **extra})
