"""user_view: paths resolved with a given uid's rights, on real folders and links.

The viewer is an uid with no account (the test runs as root and sets the modes), so each
case is the mode bits alone: search on the way, links followed as written, ``..`` after a
link, link loops, the sticky rule of replaceable parts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_gpuenv.provisioning.policy.user_view import (
    NotSeen,
    Viewer,
    replaceable_part,
    resolve_as,
)

UID, GID = 43210, 43211
ME = Viewer(UID, frozenset({GID}))
OTHER = 43220


def folder(path: Path, mode: int, uid: int = 0, gid: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


@pytest.fixture
def tree() -> Iterator[Path]:
    """A folder the viewer may reach (pytest's own temporary folders are root's 0700)."""
    root = Path(tempfile.mkdtemp(prefix="gpuenv-user-view-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield _tree(root)
    finally:
        shutil.rmtree(root)


def _tree(root: Path) -> Path:
    folder(root / "open" / "inner", 0o755)
    folder(root / "closed", 0o700, OTHER, OTHER)
    folder(root / "closed" / "public", 0o755, OTHER, OTHER)
    folder(root / "group", 0o750, OTHER, GID)
    folder(root / "mine", 0o700, UID, GID)
    return root


def test_search_rights_on_the_way_decide(tree: Path) -> None:
    assert resolve_as(str(tree / "open" / "inner"), ME).path == str(tree / "open" / "inner")
    assert resolve_as(str(tree / "group"), ME).is_dir  # through the group bits
    assert resolve_as(str(tree / "mine"), ME).path == str(tree / "mine")
    with pytest.raises(NotSeen, match="lies in a folder you cannot enter"):
        resolve_as(str(tree / "closed" / "public"), ME)
    with pytest.raises(NotSeen, match="is a folder you cannot open"):
        resolve_as(str(tree / "closed"), ME)
    # Root and the owner see what the mode bits give them.
    assert resolve_as(str(tree / "closed" / "public"), Viewer(0, frozenset({0}))).is_dir
    assert resolve_as(str(tree / "closed" / "public"), Viewer(OTHER, frozenset())).is_dir


def test_links_are_followed_as_the_viewer_and_dotdot_after_a_link(tree: Path) -> None:
    (tree / "mine" / "to-open").symlink_to(tree / "open")
    (tree / "mine" / "to-public").symlink_to(tree / "closed" / "public")
    (tree / "mine" / "relative").symlink_to("../open/inner")
    seen = resolve_as(str(tree / "mine" / "to-open" / "inner"), ME)
    assert seen.path == str(tree / "open" / "inner")
    assert seen.identity == f"{os.stat(seen.path).st_dev}:{os.stat(seen.path).st_ino}"
    assert resolve_as(str(tree / "mine" / "relative"), ME).path == str(tree / "open" / "inner")
    # ``..`` applies to where the link led, as the kernel resolves it.
    up = resolve_as(str(tree / "mine" / "relative" / ".."), ME)
    assert up.path == str(tree / "open")
    with pytest.raises(NotSeen, match="lies in a folder you cannot enter") as caught:
        resolve_as(str(tree / "mine" / "to-public"), ME)
    assert "closed" not in str(caught.value)  # only the path given is named


def test_missing_loops_and_relative_paths_are_refused(tree: Path) -> None:
    (tree / "mine" / "a").symlink_to(tree / "mine" / "b")
    (tree / "mine" / "b").symlink_to(tree / "mine" / "a")
    with pytest.raises(NotSeen, match="too many symbolic links"):
        resolve_as(str(tree / "mine" / "a"), ME)
    with pytest.raises(NotSeen, match="does not exist"):
        resolve_as(str(tree / "open" / "nothing"), ME)
    with pytest.raises(NotSeen, match="not an absolute path"):
        resolve_as("open/inner", ME)
    (tree / "open" / "file").write_text("x")
    with pytest.raises(NotSeen, match="not a folder"):
        resolve_as(str(tree / "open" / "file" / "below"), ME)


def test_replaceable_parts_follow_write_rights_and_the_sticky_bit(tree: Path) -> None:
    scratch = folder(tree / "scratch", 0o1777)
    theirs = folder(scratch / "theirs", 0o755, OTHER, OTHER)
    by_root = folder(scratch / "by-root", 0o755)
    own = folder(scratch / "own", 0o755, UID, GID)
    plain = folder(tree / "plain", 0o777)
    inside = folder(plain / "x", 0o755)
    assert replaceable_part(str(tree / "open" / "inner"), ME) is None
    assert replaceable_part(str(theirs), ME) is None  # sticky: not hers to rename
    assert replaceable_part(str(by_root), ME) is None
    assert replaceable_part(str(own), ME) == (str(own), str(scratch))
    assert replaceable_part(str(inside), ME) == (str(inside), str(plain))
    assert replaceable_part(str(tree / "mine" / "sub"), ME) is None  # does not exist
    folder(tree / "mine" / "sub", 0o755, UID, GID)
    assert replaceable_part(str(tree / "mine" / "sub"), ME) == (
        str(tree / "mine" / "sub"),
        str(tree / "mine"),
    )
    assert replaceable_part(str(own), Viewer(0, frozenset({0}))) is None
