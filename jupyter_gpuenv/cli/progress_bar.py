"""Progress bars for a listing that probes and for a create, drawn for a person at a terminal.

The first ``jupyter gpuenv list`` probes every environment, which can take a while; on a
terminal a bar on standard error says how far it has come and is erased before the table.
Piped or redirected output, and ``--json``, get nothing extra: byte for byte what they
got without it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..environments.catalog import ProgressCallback
from ..environments.create.job import CreateJob, Listener
from ..environments.scan_progress import ScanProgress

SHOW_AFTER_SECONDS = 0.5  # a warm listing finishes before any bar appears


def on_terminal() -> bool:
    """Both standard output and standard error go to a terminal."""
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextmanager
def scan_progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A callback drawing the scan's progress, or None when nothing should be drawn."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(
        desc="Probing environments",
        unit="env",
        leave=False,
        delay=SHOW_AFTER_SECONDS,
        file=sys.stderr,
    )

    def report(progress: ScanProgress) -> None:
        if progress.total is None:
            return
        if bar.total != progress.total:
            bar.total = progress.total
        # Also with nothing new: the bar appears after its delay and its clock moves on.
        bar.update(progress.probed - bar.n)

    try:
        yield report
    finally:
        bar.close()


@contextmanager
def create_progress(enabled: bool) -> Iterator[Listener]:
    """A listener drawing a create's current step as a bar (a terminal), else one line per
    step on standard error, so a log shows what ran and where it stopped."""
    if not enabled:
        seen: list[int] = []

        def line(job: CreateJob) -> None:
            if len(job.steps) > len(seen):
                seen.append(len(job.steps))
                print(f"{job.steps[-1].key}: {job.steps[-1].message}", file=sys.stderr)

        yield line
        return
    from tqdm import tqdm

    bars: dict[int, tqdm] = {}

    def draw(job: CreateJob) -> None:
        if not job.steps:
            return
        index, step = len(job.steps) - 1, job.steps[-1]
        bar = bars.get(index)
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[index] = tqdm(desc=step.message, total=step.total, file=sys.stderr)
        if step.total is not None and bar.total != step.total:
            bar.total = step.total
        if step.done is not None and step.done > bar.n:
            bar.update(step.done - bar.n)
        if step.detail:
            bar.set_postfix_str(step.detail[-40:], refresh=False)
        bar.refresh()

    try:
        yield draw
    finally:
        for bar in bars.values():
            bar.close()
