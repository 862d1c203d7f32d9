"""The doctor's report over catalog environments, shared by the CLI, REST and the catalog.

``CompatibilityAnnotator`` is registered in ``Catalog.annotators``: after every scan it
fills each environment's ``compatibility`` against the real host. ``doctor_report`` builds
the JSON of ``jupyter gpuenv doctor --json`` and ``GET /gpuenv/api/doctor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..config import GpuEnv
from ..config_check import problems_json
from ..docker.client import docker_client
from ..environments.model import Environment
from ..errors import BadRequest, DockerUnavailable, EnvironmentNotFound
from ..gpu.grant import read_user_grant
from ..gpu_set import GpuSet
from ..kernel.compatibility import Compatibility, evaluate
from ..kernel.host_info import HostInfo
from .cuda_runtime import cuda_runtime_of
from .image_findings import image_findings


def evaluate_environment(
    env: Environment, host: HostInfo, config: GpuEnv | None = None
) -> Compatibility:
    """``evaluate`` with the admin's settings: the env's GPUs and minor-version policy.

    The GPUs are the admin's setting for the environment narrowed by the user's grant,
    as a launch would get them.
    """
    requested = launch_gpus(env, config).to_json() if config is not None else None
    minor_compat = bool(getattr(config, "cuda_minor_version_compatibility", True))
    runtime = None
    reader = _image_reader(config) if env.kind == "docker" else None
    if env.cannot_start and config is not None and env.name in config.rejected_docker_images:
        return Compatibility.of(image_findings(env, config, reader))  # nothing else to check
    if not env.torch_version and not env.cuda_version:
        runtime = cuda_runtime_of(env, reader)
    compatibility = evaluate(
        env,
        host,
        requested_gpus=requested,
        minor_version_compatibility=minor_compat,
        cuda_runtime=runtime,
    )
    extra = image_findings(env, config, reader)
    return Compatibility.of(compatibility.findings + extra) if extra else compatibility


def launch_gpus(env: Environment, config: GpuEnv) -> GpuSet:
    """The GPUs a kernel of ``env`` would get: the admin's setting ∩ the user's grant."""
    return config.environment_gpus(env.settings).intersect(read_user_grant(config.user_gpus_env))


def _image_reader(config: GpuEnv | None) -> Any:
    try:
        return docker_client(config.docker_host or None if config is not None else None)
    except DockerUnavailable:
        return None


def environment_entry(env: Any, compatibility: Compatibility) -> dict[str, Any]:
    return {"id": env.id, "name": env.name, "kind": env.kind, **compatibility.to_json()}


def doctor_report(envs: Iterable[Any], host: HostInfo, config: Any = None) -> dict[str, Any]:
    """``{"host", "problems", "environments": [{"id", "name", "kind", "verdict", "findings"}]}``.

    ``problems`` are the configuration's invalid settings (see config_check).
    """
    return {
        "host": host.to_json(),
        "problems": problems_json(config) if isinstance(config, GpuEnv) else [],
        "environments": [
            environment_entry(env, evaluate_environment(env, host, config)) for env in envs
        ],
    }


def has_errors(report: dict[str, Any]) -> bool:
    """An environment with an error, or an invalid setting."""
    if report.get("problems"):
        return True
    return any(entry["verdict"] == "error" for entry in report["environments"])


def select_environments(envs: list[Any], key: str | None) -> list[Any]:
    """All environments, or the one whose id (or else name) is ``key``."""
    if not key:
        return list(envs)
    by_id = [env for env in envs if env.id == key]
    chosen = by_id or [env for env in envs if env.name == key]
    if not chosen:
        raise EnvironmentNotFound(f"no environment with id or name {key!r}")
    return chosen


def hypothetical_host_or_none(
    driver_version: str | None, compute_capability: str | None
) -> HostInfo | None:
    """The host the flags describe, or None when no flag is given (use the real host)."""
    if not driver_version and not compute_capability:
        return None
    try:
        return HostInfo.hypothetical_host(driver_version or None, compute_capability or None)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


class CompatibilityAnnotator:
    """Catalog annotator: sets ``env.compatibility`` against the real host after a scan.

    ``host`` is called once per scan (``HostProbe`` caches the reading). A host that cannot
    be read leaves ``compatibility`` as it was and logs why; it never fails the scan.
    """

    def __init__(self, host: Callable[[], HostInfo], config: Any = None, log: Any = None):
        self.host = host
        self.config = config
        self.log = log

    def __call__(self, envs: list[Any]) -> None:
        try:
            host = self.host()
        except Exception as exc:
            if self.log is not None:
                self.log.warning("jupyter_gpuenv doctor: cannot read the host: %s", exc)
            return
        for env in envs:
            env.compatibility = evaluate_environment(env, host, self.config).to_json()
