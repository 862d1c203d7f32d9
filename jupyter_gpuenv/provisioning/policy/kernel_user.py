"""Who a kernel container runs as, decided on numbers, never on spellings.

A ``user`` setting may be written ``"0"``, ``"00"``, ``"+0"``, ``"root"``, ``"0:0"`` or
``"65534:shadow"``; Docker resolves names with the *image's* /etc/passwd and gives gid 0
to a uid it does not know. So every setting is parsed here into an explicit numeric
``uid:gid`` (names looked up on the host, a missing group filled in from the host or as
nogroup), and the rights are judged on those numbers: uid 0, gid 0 and the system groups
(below 1000: shadow, disk, adm, docker, ...) are privileged.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from dataclasses import dataclass

NOBODY = 65534
NOGROUP = 65534
FIRST_ORDINARY_ID = 1000
MAX_ID = 2**31 - 1
_NUMBER = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


class UserSpecError(ValueError):
    """A ``user`` setting that does not name a user (the message says why)."""


@dataclass(frozen=True)
class KernelUser:
    """A numeric ``uid:gid``, the only form handed to Docker."""

    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def privileged_group(self, own_gid: int | None = None) -> bool:
        """gid 0, or a system group other than the server's own."""
        if self.gid == 0:
            return True
        return self.gid < FIRST_ORDINARY_ID and self.gid != own_gid

    @classmethod
    def of_server(cls) -> KernelUser:
        return cls(os.getuid(), os.getgid())


def parse_user(spec: object) -> KernelUser:
    """``uid``, ``name``, ``uid:gid``, ``name:group`` (host names) -> numbers.

    Raises UserSpecError for anything else (signs, spaces, unknown names, huge numbers).
    """
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        raise UserSpecError(f"user {spec!r} must be a string like 'uid:gid'")
    text = str(spec)
    user_part, sep, group_part = text.partition(":")
    uid = _user_id(user_part, text)
    if sep:
        gid = _group_id(group_part, text)
    else:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = NOGROUP
    return KernelUser(uid, gid)


def _user_id(part: str, whole: str) -> int:
    if _NUMBER.fullmatch(part):
        return _bounded(int(part), whole)
    if _NAME.fullmatch(part):
        try:
            return pwd.getpwnam(part).pw_uid
        except KeyError:
            raise UserSpecError(f"user {whole!r}: no user {part!r} on this host") from None
    raise UserSpecError(f"user {whole!r}: {part!r} is neither a user name nor a uid")


def _group_id(part: str, whole: str) -> int:
    if _NUMBER.fullmatch(part):
        return _bounded(int(part), whole)
    if _NAME.fullmatch(part):
        try:
            return grp.getgrnam(part).gr_gid
        except KeyError:
            raise UserSpecError(f"user {whole!r}: no group {part!r} on this host") from None
    raise UserSpecError(f"user {whole!r}: {part!r} is neither a group name nor a gid")


def _bounded(number: int, whole: str) -> int:
    if number > MAX_ID:
        raise UserSpecError(f"user {whole!r}: {number} is not a valid id")
    return number


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_user(spec: object, allow_root: bool) -> tuple[KernelUser | None, str | None]:
    """(the numeric user, None) when a kernelspec may run as ``spec``, else (None, why).

    Judged on numbers after parsing: uid 0, gid 0 and system groups need
    ``docker_allow_root``; a server that is not root starts kernels only as itself (its
    kernels could not read their connection file as anybody else).
    """
    try:
        user = parse_user(spec)
    except UserSpecError as err:
        return None, str(err)
    own = KernelUser.of_server()
    if allow_root:
        return user, None
    if user.is_root:
        return None, f"user {spec!r} is uid 0 (root needs c.GpuEnv.docker_allow_root = True)"
    if user.privileged_group(own.gid):
        return None, (
            f"user {spec!r} has the privileged group {group_name(user.gid)} ({user.gid}) "
            "(it needs c.GpuEnv.docker_allow_root = True)"
        )
    if own.uid != 0 and user != own:
        return None, (
            f"user {spec!r}: this server runs as {own} and starts kernels only as that user"
        )
    return user, None
