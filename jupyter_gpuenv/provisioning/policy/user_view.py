"""Folders as a kernel's user sees them, not as root does.

A root server or broker resolves the folders it mounts into a user's kernel. Docker
mounts with root's rights, past every folder on the way that the user cannot enter, and
follows any symlink present at the moment of the mount. So a folder is resolved here
one component at a time, never following a link blindly: each folder on the way must
let the user through (search permission for their uid and groups), a link is read and
its target walked the same way, and the result carries the folder's identity (device
and inode) so that what Docker mounted later can be compared with what was checked.
:func:`replaceable_part` says whether the user could swap a component of a path for a
link of their own between the check and the mount (write access to its folder).

Permissions are the mode bits; ACLs that grant more are not read (a folder only an ACL
opens is refused, never the reverse).
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass

from .kernel_user import KernelUser

MAX_LINKS = 40  # as the kernel's own limit on links in one lookup
SEARCH, WRITE, READ = 1, 2, 4


class NotSeen(Exception):
    """The user cannot reach the path (the message names only the path given)."""


@dataclass(frozen=True)
class Viewer:
    """A uid with its primary and supplementary groups, as the kernel would run."""

    uid: int
    groups: frozenset[int]

    @classmethod
    def of(cls, user: KernelUser) -> Viewer:
        """The account's groups from the host when it has one, else the gid alone."""
        groups = {user.gid}
        try:
            name = pwd.getpwuid(user.uid).pw_name
            groups.update(os.getgrouplist(name, user.gid))
        except (KeyError, OSError):
            pass
        return cls(user.uid, frozenset(groups))

    def may(self, st: os.stat_result, wanted: int) -> bool:
        """Whether the mode bits of ``st`` give this viewer all of ``wanted``."""
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            bits = st.st_mode >> 6
        elif st.st_gid in self.groups:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        return bits & wanted == wanted


@dataclass(frozen=True)
class SeenPath:
    """Where a path led for the viewer, and the identity of what was there."""

    path: str
    device: int
    inode: int
    is_dir: bool

    @property
    def identity(self) -> str:
        return f"{self.device}:{self.inode}"


def resolve_as(path: str, viewer: Viewer) -> SeenPath:
    """``path`` resolved as ``viewer`` would: every folder on the way searchable by
    them, links followed by reading them, never through root's rights."""
    if not os.path.isabs(path) or "\0" in path:
        raise NotSeen(f"{path!r} is not an absolute path")
    pending = [p for p in reversed(path.split("/")) if p and p != "."]
    names: list[str] = []
    fds = [os.open("/", os.O_PATH | os.O_DIRECTORY)]
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                if len(fds) > 1:
                    os.close(fds.pop())
                    names.pop()
                continue
            here = os.fstat(fds[-1])
            if not stat.S_ISDIR(here.st_mode):
                raise NotSeen(f"{path} goes through something that is not a folder")
            if not viewer.may(here, SEARCH):
                raise NotSeen(f"{path} lies in a folder you cannot enter")
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=fds[-1])
            except FileNotFoundError:
                raise NotSeen(f"{path} does not exist") from None
            except NotADirectoryError:
                raise NotSeen(f"{path} goes through something that is not a folder") from None
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                target = os.readlink("", dir_fd=fd)
                os.close(fd)
                links += 1
                if links > MAX_LINKS:
                    raise NotSeen(f"{path} goes through too many symbolic links")
                if target.startswith("/"):
                    while len(fds) > 1:
                        os.close(fds.pop())
                    names.clear()
                pending += [p for p in reversed(target.split("/")) if p and p != "."]
                continue
            fds.append(fd)
            names.append(name)
        st = os.fstat(fds[-1])
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and not viewer.may(st, SEARCH | READ):
            raise NotSeen(f"{path} is a folder you cannot open")
        return SeenPath("/" + "/".join(names), st.st_dev, st.st_ino, is_dir)
    except PermissionError:
        raise NotSeen(f"{path} lies in a folder you cannot enter") from None
    finally:
        for fd in fds:
            os.close(fd)


def replaceable_part(path: str, viewer: Viewer) -> tuple[str, str] | None:
    """The first component of resolved ``path`` the viewer could replace, with the
    folder whose write access allows it; None when every part is out of their reach.

    A folder with the sticky bit (``/tmp``, a shared ``/scratch``) lets the viewer
    replace only entries they own, or any when the folder is theirs.
    """
    if viewer.uid == 0:
        return None
    parent = "/"
    for name in [p for p in path.split("/") if p]:
        child = os.path.join(parent, name)
        try:
            parent_st, child_st = os.lstat(parent), os.lstat(child)
        except OSError:
            return None
        if viewer.may(parent_st, WRITE | SEARCH):
            sticky = bool(parent_st.st_mode & stat.S_ISVTX)
            if not sticky or viewer.uid in (parent_st.st_uid, child_st.st_uid):
                return child, parent
        parent = child
    return None
