"""Doctor findings about how a Docker environment is configured, beside its CUDA build.

An invalid ``docker_images`` entry is an error (it has no kernel until fixed); an image
named by a moving tag (``latest``, or none) is a warning, because the same name may run
another image after the next pull or build: the fix names the digest or a versioned tag.
"""

from __future__ import annotations

from docker import DockerClient

from ..config import GpuEnv
from ..environments.image_pins import image_digest, moving_tag, versioned_tags
from ..environments.model import Environment
from ..kernel.compatibility import Finding


def image_findings(
    env: Environment, config: GpuEnv | None, client: DockerClient | None
) -> list[Finding]:
    """Findings for a Docker environment's entry and image reference (none for others)."""
    if env.kind != "docker":
        return []
    rejected = config.rejected_docker_images if config is not None else {}
    if env.name in rejected and env.cannot_start:
        _value, expected = rejected[env.name]
        return [
            Finding(
                "error",
                f"c.GpuEnv.docker_images[{env.name!r}] is invalid: expected {expected}",
                "correct the entry in the server's configuration (jupyter_server_config.py) "
                "and restart the server",
            )
        ]
    reference = env.location.get("image")
    if not isinstance(reference, str):
        return []
    tag = moving_tag(reference)
    if tag is None:
        return []
    said = f"the moving tag {tag!r}" if tag else "no tag (Docker reads it as 'latest')"
    message = (
        f"image {reference} is referenced by {said}: a later pull or build can replace "
        "it, so this environment will not reproduce"
    )
    return [Finding("warning", message, _pin_fix(env, reference, client))]


def _pin_fix(env: Environment, reference: str, client: DockerClient | None) -> str:
    image = env.location.get("image_id") or reference
    digest = image_digest(client, image, reference) if client is not None else None
    tags = list(env.location.get("tags") or [])
    if digest is not None:
        tags += digest.repo_tags
    pinned = versioned_tags(dict.fromkeys(tags))
    where = (
        f"c.GpuEnv.docker_images[{env.name!r}]"
        if env.location.get("image") == reference
        else "c.GpuEnv.docker_images"
    )
    options = []
    if digest is not None and digest.source == "RepoDigests":
        options.append(f"its digest {digest.value}")
    if pinned:
        options.append(f"a versioned tag such as {pinned[0]}")
    if not options:
        options.append("a versioned tag (`docker tag " + reference + " <repository>:<version>`)")
        if digest is not None:
            options.append(f"its image id {digest.value}")
    return f"pin the image in {where}: use " + " or ".join(options)
