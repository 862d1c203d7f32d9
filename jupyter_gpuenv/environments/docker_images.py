"""Docker images as environments: the configured ``docker_images`` and opt-in labelled images.

Discovery asks the engine for image metadata only; code runs inside an image only through
:func:`jupyter_gpuenv.docker.runs.run_in_image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import docker.errors

from ..docker import labels
from ..docker.runs import short_error
from .candidates import Candidate

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


def image_candidates(client: Any, config: Any) -> list[Candidate]:
    """Candidates for configured entries and (unless disabled) labelled local images."""
    found: list[Candidate] = []
    configured_ids: set[str] = set()
    for name in config.docker_images:
        entry = config.docker_entry(name)
        candidate = _configured_candidate(client, name, entry)
        if candidate.location.get("image_id"):
            configured_ids.add(candidate.location["image_id"])
        found.append(candidate)
    if config.docker_label_discovery and not config.restrict_to_configured_images:
        found += _labelled_candidates(client, configured_ids)
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
    return out


def _configured_candidate(client: Any, name: str, entry: dict[str, Any]) -> Candidate:
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


def _labelled_candidates(client: Any, skip_ids: set[str]) -> list[Candidate]:
    summaries = client.api.images(filters={"label": f"{labels.IMAGE_ENABLE}=true"})
    out = []
    for summary in sorted(summaries, key=lambda s: (s.get("RepoTags") or [""])[0]):
        image_id = summary["Id"]
        image_labels = summary.get("Labels") or {}
        if image_id in skip_ids or labels.LAYER_BASE_ID in image_labels:
            continue  # configured already, or our own ipykernel layer built FROM it
        tags = [t for t in summary.get("RepoTags") or [] if t != "<none>:<none>"]
        reference = tags[0] if tags else image_id
        entry: dict[str, Any] = {"image": reference}
        if image_labels.get(labels.IMAGE_CONDA_ENV):
            entry["conda_env"] = image_labels[labels.IMAGE_CONDA_ENV]
        if image_labels.get(labels.IMAGE_DISPLAY_NAME):
            entry["display_name"] = image_labels[labels.IMAGE_DISPLAY_NAME]
        info = client.api.inspect_image(image_id)
        image_env = (info.get("Config") or {}).get("Env") or ()
        name = reference if tags else image_id.split(":")[-1][:12]
        out.append(
            _candidate(name, f"label:{reference}", entry, image_id, image_env, image_labels, [])
        )
    return out


def _candidate(
    name: str,
    discriminator: str,
    entry: dict[str, Any],
    image_id: str | None,
    image_env: Sequence[str],
    image_labels: dict[str, str],
    problems: list[str],
) -> Candidate:
    conda_env = entry.get("conda_env")
    python = conda_python(conda_env, image_env)
    settings = dict(entry)
    settings["image_id"] = image_id
    return Candidate(
        kind="docker",
        name=name,
        discriminator=discriminator,
        location={"image": entry["image"], "image_id": image_id, "conda_env": conda_env},
        identity=f"docker:{image_id}|{conda_env or ''}" if image_id else None,
        python=python,
        settings=settings,
        labels=dict(image_labels),
        problems=problems,
        display_name=entry.get("display_name"),
    )
