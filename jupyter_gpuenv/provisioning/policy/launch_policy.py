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

from ...config import GpuEnv
from ...environments.model import Environment
from ...errors import PolicyViolation
from ...gpu.grant import NVIDIA_VISIBLE_DEVICES, read_user_grant
from ...gpu_set import GpuSet, GpuSetError, gpu_key
from .kernel_user import check_user
from .launch_gate import NOT_ALLOWLISTED, guarded_variable
from .request_shapes import drop_misshapen

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


# What each provisioner reads from a kernelspec; any other key is refused, not ignored.
DOCKER_KEYS = frozenset(
    {
        "environment_id",
        "gpus",
        "image",
        "mounts",
        "mem_limit",
        "cpus",
        "shm_size",
        "user",
        "cap_drop",
        "environment",
    }
)
LOCAL_KEYS = frozenset({"environment_id", "gpus"})


# Settings of the admin's docker_images entry that a Docker kernel is created with.
LAUNCH_SETTING_KEYS = ("mounts", "mem_limit", "cpus", "shm_size", "user", "cap_drop")


@dataclass
class EffectiveLaunch:
    """What a kernel launch may use after the policy has been applied.

    ``overrides`` holds the kernelspec's own keys that the policy let through; the
    provisioner applies those it understands on top of the admin's environment settings.
    ``notes`` are lines for the kernel's startup log (e.g. a GPU request narrowed).
    """

    gpus: GpuSet
    image: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    admin: dict[str, Any] = field(default_factory=dict)
    grant: GpuSet | None = None
    notes: list[str] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        """The container's settings: the admin's entry, then the kernelspec's allowed keys.

        ``admin`` is read from ``c.GpuEnv`` at launch; nothing comes from the catalog's
        cache, which the server's user can write.
        """
        settings = {k: self.admin[k] for k in LAUNCH_SETTING_KEYS if k in self.admin}
        for key in LAUNCH_SETTING_KEYS:
            if key in self.overrides:
                settings[key] = self.overrides[key]
        environment = dict(self.admin.get("environment") or {})
        environment.update(self.overrides.get("environment") or {})
        if environment:
            settings["environment"] = environment
        return settings


def user_gpu_grant(config: GpuEnv, environ: Mapping[str, str] | None = None) -> GpuSet | None:
    """The per-user grant the spawner put in the server's environment; None when unset."""
    grant = read_user_grant(config.user_gpus_env, environ)
    return None if grant.source is None else grant


def effective_gpus(
    config: GpuEnv, env_gpus: object = None, environ: Mapping[str, str] | None = None
) -> GpuSet:
    """The GPUs a kernel of this environment gets: admin setting ∩ the user's grant.

    ``env_gpus`` is the environment's own ``gpus`` entry, or a set already narrowed by
    the policy (None: use ``c.GpuEnv.gpus``).
    """
    base = config.gpus if env_gpus is None else GpuSet.parse(env_gpus)
    grant = user_gpu_grant(config, environ)
    return base if grant is None else base.intersect(grant)


def local_gpu_environment(
    config: GpuEnv, env_gpus: object = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for a kernel running as a local process ({} when unrestricted).

    Ids are host ids. A server in a container whose NVIDIA_VISIBLE_DEVICES names devices
    sees only those, renumbered from 0: host indexes would pick the wrong GPUs there, so
    the container stays the limit unless the selection uses UUIDs, which mean the same
    inside and out. "none" hides every GPU anywhere; a count takes the first N devices.
    """
    env = os.environ if environ is None else environ
    gpus = effective_gpus(config, env_gpus, env)
    if gpus.is_none:
        return {"CUDA_VISIBLE_DEVICES": ""}
    if gpus.is_all:
        return {}
    if gpus.count is not None:
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(gpus.count))}
    ids = gpus.ids or ()
    if _in_narrowed_container(env) and any(gpu_key(g).isdigit() for g in ids):
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(ids)}


def _in_narrowed_container(environ: Mapping[str, str]) -> bool:
    """Whether the NVIDIA runtime handed this process only some of the host's GPUs."""
    if NVIDIA_VISIBLE_DEVICES not in environ:
        return False
    return not GpuSet.parse(environ[NVIDIA_VISIBLE_DEVICES]).is_all


def _admin_entry(
    config: GpuEnv, env: Environment | None
) -> tuple[str | None, dict[str, Any] | None]:
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


def _configured_images(config: GpuEnv) -> dict[str, str]:
    return {config.docker_entry(name)["image"]: name for name in config.docker_images}


def _check_gpus(wanted: GpuSet, allowed: GpuSet, grant: GpuSet | None) -> str | None:
    """None when the requested GPUs fit the allowed ones, else the refusal text."""
    if wanted.is_none or wanted.is_all:
        return None  # "all" means every GPU this kernel may have
    if allowed.covers(wanted):
        return None
    if wanted.count is not None:
        what = f"{wanted.count} GPUs"
    else:
        beyond = allowed.beyond(wanted) if allowed.ids is not None else list(wanted.ids or ())
        what = f"GPUs {', '.join(beyond)}"
    if grant is not None:
        limit = f"the grant {grant.describe()}"
    else:
        limit = f"the allowed GPUs ({allowed})"
    if allowed.is_none:
        limit += ", i.e. no GPU"
    return f"{what} beyond {limit}"


def _check_environment(
    requested: Any, admin: Any, gpus: GpuSet, allowlist: list[str] | None
) -> list[str]:
    if not isinstance(requested, Mapping):
        return ["environment variables (not a mapping)"]
    admin = admin if isinstance(admin, Mapping) else {}
    refused = []
    for name, value in requested.items():
        if admin.get(name) == value:
            continue
        why = guarded_variable(str(name))
        if why is None:
            if allowlist is not None and str(name) not in allowlist:
                refused.append(f"environment variable {name} ({NOT_ALLOWLISTED})")
            continue
        if str(name).strip().upper().startswith("NVIDIA_") and gpus.is_all:
            continue  # every GPU is the kernel's already
        refused.append(f"environment variable {name} ({why})")
    return refused


def enforce_policy(
    config: GpuEnv,
    env: Environment | None,
    requested: Mapping[str, Any] | None,
    *,
    kernel_name: str | None = None,
    environ: Mapping[str, str] | None = None,
    supported: frozenset[str] | None = None,
) -> EffectiveLaunch:
    """Check a kernelspec's provisioner config against the admin policy.

    ``env`` is the catalog Environment the kernelspec names (None when it names none),
    ``requested`` is ``metadata.kernel_provisioner.config``; ``supported`` the keys the
    calling provisioner uses (others are refused: a setting silently dropped would start
    a kernel without what the user asked for). Raises PolicyViolation naming everything
    refused; returns what the launch may use otherwise.

    Always enforced: GPUs within the admin's selection and the user's grant, no root
    unless ``docker_allow_root``. With ``restrict_to_configured_images`` also: only images
    of ``docker_images``, and no key that reaches the host (mounts, capabilities,
    privileged, user, network, devices, limits) unless it repeats the admin's value.
    """
    requested = dict(requested or {})
    restrict = bool(config.restrict_to_configured_images)
    requested, refused = drop_misshapen(requested)
    entry_name, entry = _admin_entry(config, env)
    admin = entry or {}

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
    gpus = allowed_gpus
    notes: list[str] = []
    if "gpus" in requested:
        try:
            wanted = GpuSet.parse(requested["gpus"])
        except GpuSetError as err:
            refused.append(f"gpus={requested['gpus']!r} ({err})")
        else:
            problem = _check_gpus(wanted, allowed_gpus, grant)
            if problem:
                refused.append(problem)
            else:
                gpus = allowed_gpus.intersect(wanted)
    if grant is not None and gpus != config.environment_gpus(admin):
        notes.append(f"GPUs limited to {gpus} by {grant.describe()}")

    if supported is not None:
        unknown = sorted(str(k) for k in requested if k not in supported)
        if unknown:
            refused.append(
                f"settings this provisioner does not support ({', '.join(unknown)}; "
                f"supported: {', '.join(sorted(supported))})"
            )
            requested = {k: v for k, v in requested.items() if k in supported}

    overrides: dict[str, Any] = {}
    for key, value in requested.items():
        if key in ("image", "gpus"):
            continue
        if key == "user":
            user, problem = check_user(value, config.docker_allow_root)
            if problem or user is None:
                refused.append(problem or f"user {value!r}")
                continue
            if restrict and admin.get(key) != value:
                refused.append(f"a different user (user={value!r})")
                continue
            overrides[key] = str(user)
            continue
        if key == "environment":
            allowlist = config.kernel_env_allowlist
            problems = _check_environment(value, admin.get("environment"), gpus, allowlist)
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
    return EffectiveLaunch(
        gpus=gpus,
        image=image,
        overrides=overrides,
        admin=dict(admin),
        grant=grant,
        notes=notes,
    )
