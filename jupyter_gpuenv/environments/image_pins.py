"""Whether an image reference will name the same image tomorrow, and how to pin it.

A tag such as ``latest`` (or no tag, which Docker reads as ``latest``) moves whenever
the image is rebuilt or pulled again, so a notebook or an environment.yml that names it
does not say which image it ran in. A registry digest (``repo@sha256:...``, Docker's
``RepoDigests``) or, for an image never pushed or pulled, its id does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import docker.errors
from docker import DockerClient

MOVING_TAGS = frozenset({"latest"})
_IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{12,64}$")


def moving_tag(reference: str) -> str | None:
    """The moving tag ``reference`` uses ("latest", or "" for none), else None.

    References by digest (``@sha256:``) or by image id never move; a versioned tag
    (``2.3.1-cuda12.1``) is taken as pinned.
    """
    if not reference or "@" in reference or _IMAGE_ID.match(reference):
        return None
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return ""
    tag = last.rsplit(":", 1)[1]
    return tag if tag in MOVING_TAGS else None


def repository_of(reference: str) -> str:
    """``registry/repo`` of a reference without its tag or digest."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


@dataclass(frozen=True)
class ImageDigest:
    """What pins an image: ``repo@sha256:...`` from RepoDigests, else its id."""

    value: str
    source: str  # "RepoDigests" or "image id"
    repo_tags: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.source == "RepoDigests":
            return f"{self.value} (registry digest, from the image's RepoDigests)"
        return (
            f"{self.value} (image id: the image has no RepoDigests, it was built or "
            "loaded locally and never pushed to or pulled from a registry)"
        )


def image_digest(
    client: DockerClient, image: str, reference: str | None = None
) -> ImageDigest | None:
    """The digest of a local image (``image``: id or reference), None when it is absent.

    Among several RepoDigests the one of ``reference``'s repository is chosen.
    """
    try:
        info = client.api.inspect_image(image)
    except (docker.errors.ImageNotFound, docker.errors.APIError):
        return None
    tags = tuple(t for t in info.get("RepoTags") or [] if isinstance(t, str))
    digests = [d for d in info.get("RepoDigests") or [] if isinstance(d, str) and "@" in d]
    if digests:
        wanted = repository_of(reference) if reference else None
        same_repo = [d for d in digests if repository_of(d) == wanted]
        return ImageDigest((same_repo or digests)[0], "RepoDigests", tags)
    return ImageDigest(str(info["Id"]), "image id", tags)


def versioned_tags(tags: Iterable[str]) -> list[str]:
    """The image's other tags that do not move (what to suggest instead of ``latest``)."""
    return [t for t in tags if moving_tag(t) is None and not _IMAGE_ID.match(t)]
