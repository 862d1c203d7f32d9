"""A real system user, created for a test and deleted after it.

Hostile-user tests run the server as an ordinary account of this host, the way a
JupyterHub spawner would, not merely as some uid: names resolve, the account has its
own group, and its files are its own.
"""

from __future__ import annotations

import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class UserUnavailable(RuntimeError):
    """Accounts cannot be created here (not root, or no useradd)."""


@dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int


@contextmanager
def system_user(prefix: str = "gpuenvsec", system: bool = True) -> Iterator[SystemUser]:
    """``useradd --system`` a uniquely named user (own group, no home, no login shell);
    ``system=False``: an ordinary account (uid and gid from 1000 up), as Hub users have."""
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        raise UserUnavailable("useradd/userdel are not installed")
    name = f"{prefix}{secrets.token_hex(3)}"
    done = subprocess.run(
        [
            "useradd",
            *(["--system"] if system else []),
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise UserUnavailable(f"useradd failed: {done.stderr.strip()}")
    try:
        entry = pwd.getpwnam(name)
        yield SystemUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)
