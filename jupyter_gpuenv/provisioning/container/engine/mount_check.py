"""What Docker mounted, compared with what was checked for the kernel's user.

Folders are resolved as the kernel's user when the container is created (user_view), but
Docker resolves the same paths again, with root's rights, when it starts the container:
a user who can write a folder on the way could swap a component for a link in between.
The container's labels hold the identity (device:inode) of each folder checked; once
the container runs, the folder at each target, seen through the kernel's own root
(``/proc/<pid>/root``), must be that same folder, or the kernel is never handed out.
"""

from __future__ import annotations

import json
import os

from docker.models.containers import Container

from ....docker import labels


def changed_mount(container: Container) -> str | None:
    """The first target whose folder is not the one checked; None when all are (or the
    container has no checked folders, or exited already: its exit is the answer)."""
    container.reload()
    raw = (container.attrs.get("Config") or {}).get("Labels", {}).get(labels.CHECKED_MOUNTS)
    if not raw:
        return None
    pid = int((container.attrs.get("State") or {}).get("Pid") or 0)
    if not pid:
        return None
    expected: dict[str, str] = json.loads(raw)
    for target, identity in sorted(expected.items()):
        try:
            st = os.stat(f"/proc/{pid}/root{target}")
        except OSError:
            return target  # cannot be told apart from a swap: never hand it out
        if f"{st.st_dev}:{st.st_ino}" != identity:
            return target
    return None
