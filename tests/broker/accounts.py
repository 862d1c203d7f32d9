"""System accounts made for the broker's Hub tests, as a Hub host's users would be.

Each has its own group, a 0700 home under the test folder and no other group (the
docker group least of all); deleting one ends its processes first.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.hub.hub_runner import HubUnavailable


@dataclass(frozen=True)
class Account:
    """A system user made for the test: Hub name = account name."""

    name: str
    uid: int
    gid: int
    home: Path


def create_account(name: str, homes: Path) -> Account:
    """``useradd`` with its own group and a 0700 home under ``homes``; no extra groups."""
    if shutil.which("useradd") is None:
        raise HubUnavailable("useradd is not installed")
    home = homes / name
    done = subprocess.run(
        ["useradd", "--user-group", "--create-home", "--home-dir", str(home), name],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise HubUnavailable(f"useradd {name} failed: {done.stderr.strip()}")
    home.chmod(0o700)
    entry = pwd.getpwnam(name)
    return Account(name, entry.pw_uid, entry.pw_gid, home)


def delete_account(account: Account) -> None:
    for pid in processes_of(account.uid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["userdel", account.name], capture_output=True, check=False)
    shutil.rmtree(account.home, ignore_errors=True)


def processes_of(uid: int) -> list[int]:
    """PIDs of the processes running as ``uid`` (the test's own accounts only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def groups_of(name: str) -> set[str]:
    """The account's groups as the system knows them (primary and supplementary)."""
    entry = pwd.getpwnam(name)
    return {grp.getgrgid(gid).gr_name for gid in os.getgrouplist(name, entry.pw_gid)}
