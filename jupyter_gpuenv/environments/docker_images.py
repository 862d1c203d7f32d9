"""Docker images as environments: the configured ``docker_images``, labelled and PyTorch images.

Discovery asks the engine for image metadata only; code runs inside an image only through
:func:`jupyter_gpuenv.docker.runs.run_in_image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import docker.errors
from docker import DockerClient

from ..docker import labels
from ..docker.runs import short_error
from .candidates import Candidate
from .pytorch_images import (
    ImageConfig,
    ImageConfigs,
    environment_name,
    image_tags,
    is_pytorch_image,
)

DEFAULT_CONDA_ROOT = "/opt/conda"


def conda_python(conda_env: str | None, image_env: Sequence[str] = ()) -> str | None:
    """The interpreter of a conda env inside an image (``base`` is the root prefix)."""
    if not conda_env:
        return None
    root = conda_root(image_env)
    if conda_env == "base":
        return f"{root}/bin/python"
    return f"{root}/envs/{conda_env}/bin/python"


def conda_root(image_env: Sequence[str] = ()) -> str:
    """The image's conda root: $CONDA_DIR / $CONDA_ROOT / $MAMBA_ROOT_PREFIX, else /opt/conda."""
    values = dict(item.split("=", 1) for item in image_env if "=" in item)
    for var in ("CONDA_DIR", "CONDA_ROOT", "MAMBA_ROOT_PREFIX"):
        if values.get(var):
            return values[var].rstrip("/")
    return DEFAULT_CONDA_ROOT


def local_discovery(config: Any) -> bool:
    """Whether local images are looked at beyond the configured ones."""
    if config.restrict_to_configured_images:
        return False
    return bool(config.docker_label_discovery or config.docker_discover_pytorch_images)


def image_candidates(
    client: DockerClient, config: Any, image_configs: ImageConfigs | None = None
) -> list[Candidate]:
    """Candidates for configured entries, then (unless disabled) labelled and PyTorch images."""
    found: list[Candidate] = []
    configured_ids: set[str] = set()
    for name in config.docker_images:
        entry = config.docker_entry(name)
        candidate = _configured_candidate(client, name, entry)
        if candidate.location.get("image_id"):
            configured_ids.add(candidate.location["image_id"])
        found.append(candidate)
    found += rejected_candidates(config)
    if local_discovery(config):
        found += _discovered_candidates(
            client, config, configured_ids, image_configs or ImageConfigs()
        )
    return found


def unreachable_candidates(config: Any, reason: str) -> list[Candidate]:
    """Configured entries listed with the reason when the engine cannot be asked."""
    out = []
    for name in config.docker_images:
        entry = config.docker_entry(name)
        out.append(
            _candidate(
                name,
                name,
                entry,
                image_id=None,
                image_env=(),
                image_labels={},
                problems=[f"{reason} Docker environments cannot start until it answers."],
            )
        )
    return out + rejected_candidates(config)


def rejected_candidates(config: Any) -> list[Candidate]:
    """Invalid docker_images entries, listed under their name with what was expected.

    They have no image id and no python, so they are never probed and get no kernelspec.
    """
    out = []
    for name, (value, expected) in sorted(config.rejected_docker_images.items()):
        image = value.get("image") if isinstance(value, dict) else value
        problem = (
            f"c.GpuEnv.docker_images[{name!r}] is invalid: expected {expected}; "
            "fix the entry in the server's configuration"
        )
        entry = {"image": image if isinstance(image, str) else ""}
        candidate = _candidate(name, name, entry, None, (), {}, [problem])
        candidate.python = None
        candidate.location["image"] = image if isinstance(image, str) else None
        candidate.settings = {}
        candidate.cannot_start = problem
        out.append(candidate)
    return out


def _configured_candidate(client: DockerClient, name: str, entry: dict[str, Any]) -> Candidate:
    reference = entry["image"]
    try:
        info = client.api.inspect_image(reference)
    except docker.errors.ImageNotFound:
        problem = (
            f"image {reference} is not present locally; pull or build it first "
            f"(`docker pull {reference}` or `docker build -t {reference} ...`)"
        )
        return _candidate(name, name, entry, None, (), {}, [problem])
    except docker.errors.APIError as exc:
        return _candidate(name, name, entry, None, (), {}, [f"Docker error: {short_error(exc)}"])
    config = info.get("Config") or {}
    return _candidate(
        name, name, entry, info["Id"], config.get("Env") or (), config.get("Labels") or {}, []
    )


def _discovered_candidates(
    client: DockerClient, config: Any, skip_ids: set[str], image_configs: ImageConfigs
) -> list[Candidate]:
    """Labelled images (``docker_label_discovery``) and PyTorch images, one per image id."""
    labelled_only = not config.docker_discover_pytorch_images
    label_filter = {"label": f"{labels.IMAGE_ENABLE}=true"}
    summaries = client.api.images(filters=label_filter) if labelled_only else client.api.images()
    wanted = [
        s
        for s in summaries
        if s["Id"] not in skip_ids and labels.LAYER_BASE_ID not in (s.get("Labels") or {})
    ]  # neither configured already nor our own ipykernel layer built FROM an image
    configs = image_configs.get_many(client, [s["Id"] for s in wanted])
    out = []
    for summary in sorted(wanted, key=lambda s: (s.get("RepoTags") or [""])[0]):
        image_id = summary["Id"]
        image_labels = summary.get("Labels") or {}
        image_config = configs.get(image_id)
        if image_config is None:
            continue  # removed since the listing
        tags = image_tags(summary)
        if config.docker_label_discovery and image_labels.get(labels.IMAGE_ENABLE) == "true":
            out.append(_labelled_candidate(image_id, tags, image_config))
        elif (
            config.docker_discover_pytorch_images and tags and is_pytorch_image(tags, image_config)
        ):
            out.append(_pytorch_candidate(image_id, tags, image_config))
    return out


def _labelled_candidate(image_id: str, tags: list[str], image: ImageConfig) -> Candidate:
    tags = sorted(tags)
    reference = tags[0] if tags else image_id
    entry: dict[str, Any] = {"image": reference}
    if image.labels.get(labels.IMAGE_CONDA_ENV):
        entry["conda_env"] = image.labels[labels.IMAGE_CONDA_ENV]
    if image.labels.get(labels.IMAGE_DISPLAY_NAME):
        entry["display_name"] = image.labels[labels.IMAGE_DISPLAY_NAME]
    name = reference if tags else image_id.split(":")[-1][:12]
    return _candidate(
        name, f"label:{reference}", entry, image_id, image.env, image.labels, [], tags
    )


def _pytorch_candidate(image_id: str, tags: list[str], image: ImageConfig) -> Candidate:
    """A PyTorch image found without configuration, named from its first tag."""
    reference = tags[0]
    return _candidate(
        environment_name(reference),
        f"image:{reference}",
        {"image": reference},
        image_id,
        image.env,
        image.labels,
        [],
        tags,
    )


def _candidate(
    name: str,
    discriminator: str,
    entry: dict[str, Any],
    image_id: str | None,
    image_env: Sequence[str],
    image_labels: dict[str, str],
    problems: list[str],
    tags: list[str] | None = None,
) -> Candidate:
    conda_env = entry.get("conda_env")
    python = conda_python(conda_env, image_env)
    settings = dict(entry)
    settings["image_id"] = image_id
    return Candidate(
        kind="docker",
        name=name,
        discriminator=discriminator,
        location={
            "image": entry["image"],
            "image_id": image_id,
            "conda_env": conda_env,
            "tags": list(tags) if tags is not None else [entry["image"]],
        },
        identity=f"docker:{image_id}|{conda_env or ''}" if image_id else None,
        python=python,
        settings=settings,
        labels=dict(image_labels),
        problems=problems,
        display_name=entry.get("display_name"),
    )
