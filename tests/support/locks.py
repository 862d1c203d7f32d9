"""Inter-process file locks, so parallel pytest sessions share one engine and one build."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_DIR = Path(os.environ.get("GPUENV_TEST_LOCK_DIR", tempfile.gettempdir())) / "gpuenv-test-locks"


@contextmanager
def file_lock(name: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<tmp>/gpuenv-test-locks/<name>.lock``.

    The kernel drops the lock when the holder dies, so a killed session never leaves a
    stale lock behind (unlike lock files created with O_EXCL).
    """
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"{name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
