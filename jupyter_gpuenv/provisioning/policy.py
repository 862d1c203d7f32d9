"""Admin policy for kernel launches: what a kernelspec may ask for, and which GPUs it gets.

On a shared server (JupyterHub) users can write kernelspecs into
``~/.local/share/jupyter/kernels`` that name our provisioners and put anything into
``metadata.kernel_provisioner.config``. The admin's configuration (``c.GpuEnv``) is the
only source of authority: a kernelspec may select an environment and narrow what it
gets, never widen it. The provisioners call :func:`enforce_policy` before they create
anything, so a refused request leaves no container behind and the user sees why.

GPU grants come from the single-user server's environment, as set by the spawner
(``c.GpuEnv.user_gpus_env``, else ``NVIDIA_VISIBLE_DEVICES``), and are intersected with
the admin's ``gpus`` setting (global or per environment).

This module knows nothing about Docker or HTTP; it maps configuration to decisions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import PolicyViolation
from ..gpu.grant import GpuGrant, parse_gpu_list, read_user_grant

GpuSelection = str | list[str]  # "all" | "none" | ["0", "GPU-…", "MIG-…"]

NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"

# Keys a kernelspec may always carry: they select or narrow, never widen.
SELECTING_KEYS = frozenset({"environment_id", "gpus", "cap_drop"})

# Keys that change what the container can reach on the host. Under
# restrict_to_configured_images they may only repeat the admin's value for the environment.
HOST_ACCESS_KEYS: dict[str, str] = {
    "image": "a different image",
    "mounts": "extra mounts",
    "volumes": "extra mounts",
    "binds": "extra mounts",
    "volumes_from": "mounts from other containers",
    "cap_add": "added capabilities",
    "privileged": "privileged mode",
    "devices": "host devices",
    "device_requests": "device requests",
    "device_cgroup_rules": "device cgroup rules",
    "network": "a network change",
    "network_mode": "a network change",
    "network_disabled": "a network change",
    "ports": "published ports",
    "extra_hosts": "a network change",
    "dns": "a network change",
    "security_opt": "security options",
    "pid_mode": "the host PID namespace",
    "ipc_mode": "an IPC namespace change",
    "uts_mode": "a UTS namespace change",
    "userns_mode": "a user namespace change",
    "sysctls": "kernel parameters (sysctls)",
    "runtime": "a container runtime change",
    "cgroup_parent": "a cgroup change",
    "group_add": "extra groups",
    "ulimits": "ulimit changes",
    "user": "a different user",
    "environment": "environment variables",
    "mem_limit": "a different memory limit",
    "memswap_limit": "a different memory limit",
    "cpus": "a different CPU limit",
    "shm_size": "a different /dev/shm size",
    "conda_env": "a different conda environment in the image",
}

# Environment variables that control which GPUs the NVIDIA runtime hands a container.
GPU_CONTROL_ENV_PREFIX = "NVIDIA_"

ROOT_USERS = frozenset({"root", "0"})


@dataclass
class EffectiveLaunch:
    """What a kernel launch may use after the policy has been applied.

    ``overrides`` holds the kernelspec's own keys that the policy let through; the
    provisioner applies those it understands on top of the admin's environment settings.
    ``notes`` are lines for the kernel's startup log (e.g. a GPU request narrowed).
    """

    gpus: GpuSelection
    image: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    grant: GpuGrant | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def nvidia_visible_devices(self) -> str:
        """The value for the container's NVIDIA_VISIBLE_DEVICES (``void`` hides every GPU)."""
        if self.gpus == "all":
            return "all"
        if self.gpus == "none" or not self.gpus:
            return "void"
        return ",".join(self.gpus)


def format_gpus(gpus: GpuSelection) -> str:
    return gpus if isinstance(gpus, str) else ",".join(gpus) or "none"


def user_gpu_grant(config: Any, environ: Mapping[str, str] | None = None) -> GpuGrant | None:
    """The per-user grant the spawner put in the server's environment; None when unset.

    ``c.GpuEnv.user_gpus_env`` (default GPUENV_GPUS) wins; NVIDIA_VISIBLE_DEVICES is the
    fallback because a container-based spawner sets it for the NVIDIA runtime anyway.
    """
    grant = read_user_grant(config.user_gpus_env, environ)
    return None if grant.source is None else grant


def describe_grant(grant: GpuGrant) -> str:
    return f"{grant.source}={format_gpus(grant.to_json())}"


def _gpu_key(gpu_id: Any) -> str:
    """Compare ids loosely: "01" is index 1, UUIDs ignore case."""
    text = str(gpu_id).strip()
    return str(int(text)) if text.isdigit() else text.lower()


def intersect_gpus(first: GpuSelection, second: GpuSelection) -> GpuSelection:
    """GPUs present in both selections, keeping the order of ``first``."""
    if first == "none" or second == "none":
        return "none"
    if first == "all":
        return list(second) if second != "all" else "all"
    if second == "all":
        return list(first)
    allowed = {_gpu_key(g) for g in second}
    kept = [str(g) for g in first if _gpu_key(g) in allowed]
    return kept or "none"


def _normalise(gpus: Any) -> GpuSelection:
    from ..config import validate_gpus_value

    return validate_gpus_value(gpus)


def effective_gpus(
    config: Any, env_gpus: Any = None, environ: Mapping[str, str] | None = None
) -> GpuSelection:
    """The GPUs a kernel of this environment gets: admin setting ∩ the user's grant.

    ``env_gpus`` is the environment's own ``gpus`` entry (None: use ``c.GpuEnv.gpus``).
    """
    base = _normalise(config.gpus if env_gpus is None else env_gpus)
    grant = user_gpu_grant(config, environ)
    return base if grant is None else intersect_gpus(base, grant.to_json())


def local_gpu_environment(
    config: Any, env_gpus: Any = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for a kernel running as a local process ({} when unrestricted).

    Ids are host ids. A server in a container whose NVIDIA_VISIBLE_DEVICES names devices
    sees only those, renumbered from 0: host indexes would pick the wrong GPUs there, so
    the container stays the limit unless the selection uses UUIDs, which mean the same
    inside and out. "none" hides every GPU anywhere.
    """
    env = os.environ if environ is None else environ
    gpus = effective_gpus(config, env_gpus, env)
    if gpus == "none":
        return {"CUDA_VISIBLE_DEVICES": ""}
    if gpus == "all":
        return {}
    if _in_narrowed_container(env) and any(_gpu_key(g).isdigit() for g in gpus):
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}


def _in_narrowed_container(environ: Mapping[str, str]) -> bool:
    """Whether the NVIDIA runtime handed this process only some of the host's GPUs."""
    if NVIDIA_VISIBLE_DEVICES not in environ:
        return False
    return not parse_gpu_list(environ[NVIDIA_VISIBLE_DEVICES]).is_all


def _admin_entry(config: Any, env: Any) -> tuple[str | None, dict[str, Any] | None]:
    """(docker_images key, normalised entry) of the environment, if the admin configured it."""
    if env is None or getattr(env, "kind", None) != "docker":
        return None, None
    name = getattr(env, "name", None)
    if name in config.docker_images:
        entry = config.docker_entry(name)
        image = (getattr(env, "location", None) or {}).get("image")
        if image is None or image == entry["image"]:
            return name, entry
    return None, None


def _configured_images(config: Any) -> dict[str, str]:
    return {config.docker_entry(name)["image"]: name for name in config.docker_images}


def _is_root(user: Any) -> bool:
    text = str(user).strip().lower()
    return text.split(":", 1)[0] in ROOT_USERS


def _check_gpus(requested: Any, allowed: GpuSelection, grant: GpuGrant | None) -> str | None:
    """None when the requested GPUs fit the allowed ones, else the refusal text."""
    wanted = _normalise(requested)
    if wanted in ("none", "all"):
        return None  # "all" means every GPU this kernel may have
    beyond = [g for g in wanted if intersect_gpus([g], allowed) == "none"]
    if not beyond:
        return None
    if grant is not None:
        limit = f"the grant {describe_grant(grant)}"
    else:
        limit = f"the allowed GPUs ({format_gpus(allowed)})"
    if allowed == "none":
        limit += ", i.e. no GPU"
    return f"GPUs {', '.join(beyond)} beyond {limit}"


def _check_environment(requested: Any, admin: Any, gpus: GpuSelection) -> list[str]:
    if not isinstance(requested, Mapping):
        return ["environment variables (not a mapping)"]
    admin = admin if isinstance(admin, Mapping) else {}
    refused = []
    for name, value in requested.items():
        if admin.get(name) == value:
            continue
        if str(name).upper().startswith(GPU_CONTROL_ENV_PREFIX) and gpus != "all":
            refused.append(f"environment variable {name} (it would change the GPUs)")
    return refused


def enforce_policy(
    config: Any,
    env: Any,
    requested: Mapping[str, Any] | None,
    *,
    kernel_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> EffectiveLaunch:
    """Check a kernelspec's provisioner config against the admin policy.

    ``env`` is the catalog Environment the kernelspec names (None when it names none),
    ``requested`` is ``metadata.kernel_provisioner.config``. Raises PolicyViolation
    naming everything refused; returns what the launch may use otherwise.

    Always enforced: GPUs within the admin's selection and the user's grant, no root
    unless ``docker_allow_root``. With ``restrict_to_configured_images`` also: only images
    of ``docker_images``, and no key that reaches the host (mounts, capabilities,
    privileged, user, network, devices, limits) unless it repeats the admin's value.
    """
    requested = dict(requested or {})
    restrict = bool(config.restrict_to_configured_images)
    entry_name, entry = _admin_entry(config, env)
    admin = entry or {}
    refused: list[str] = []

    image = (getattr(env, "location", None) or {}).get("image") if env is not None else None
    wanted_image = requested.get("image")
    if wanted_image is not None and wanted_image != image:
        images = _configured_images(config)
        if wanted_image in images:
            entry_name, admin = images[wanted_image], config.docker_entry(images[wanted_image])
        elif restrict:
            allowed = ", ".join(sorted(images)) or "none configured"
            refused.append(f"image {wanted_image!r} (allowed images: {allowed})")
        image = wanted_image
    elif restrict and env is not None and env.kind == "docker" and entry_name is None:
        refused.append(
            f"environment {env.name!r} (image {image!r}) is not in c.GpuEnv.docker_images"
        )

    grant = user_gpu_grant(config, environ)
    allowed_gpus = effective_gpus(config, admin.get("gpus"), environ)
    gpus: GpuSelection = allowed_gpus
    notes: list[str] = []
    if "gpus" in requested:
        problem = _check_gpus(requested["gpus"], allowed_gpus, grant)
        if problem:
            refused.append(problem)
        else:
            gpus = intersect_gpus(allowed_gpus, _normalise(requested["gpus"]))
    if grant is not None and gpus != _normalise(admin.get("gpus", config.gpus)):
        notes.append(f"GPUs limited to {format_gpus(gpus)} by {describe_grant(grant)}")

    overrides: dict[str, Any] = {}
    for key, value in requested.items():
        if key in ("image", "gpus"):
            continue
        if key == "user" and _is_root(value) and not config.docker_allow_root:
            refused.append(f"user {value!r} (root needs c.GpuEnv.docker_allow_root = True)")
            continue
        if key == "environment":
            problems = _check_environment(value, admin.get("environment"), gpus)
            refused.extend(problems)
            if problems:
                continue
        if not restrict or key in SELECTING_KEYS or admin.get(key) == value:
            overrides[key] = value
        elif key == "environment":
            overrides[key] = value
        elif key == "privileged" and not value:
            overrides[key] = value
        else:
            what = HOST_ACCESS_KEYS.get(key, "a setting kernelspecs may not change")
            refused.append(f"{what} ({key}={value!r})")

    if refused:
        who = f"Kernelspec {kernel_name!r}" if kernel_name else "This kernelspec"
        raise PolicyViolation(
            f"{who} asks for more than the administrator allows; refused: "
            + "; ".join(refused)
            + ". Pick an environment from the launcher or ask the administrator to add it "
            "to c.GpuEnv.docker_images."
        )
    return EffectiveLaunch(gpus=gpus, image=image, overrides=overrides, grant=grant, notes=notes)
