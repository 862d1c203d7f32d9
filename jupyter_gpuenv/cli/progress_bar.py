"""A progress bar for a listing that probes, drawn only for a person at a terminal.

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
