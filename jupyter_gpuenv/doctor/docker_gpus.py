"""Docker environments whose GPU setting this engine cannot honour, as catalog problems.

An environment with explicit GPU ids cannot start on an engine without NVIDIA support;
one with "all" starts without GPUs. The catalog says so before a user tries, and marks
the first ``cannot_start`` so that no kernelspec offers it. In swarm mode the nodes'
engines, not the manager's, run the kernels and Swarm hands out the GPUs, so the
manager's runtime says nothing about them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config import GpuEnv
from ..docker.client import docker_client
from ..docker.nvidia_runtime import GpuRuntime, detect_runtime
from ..environments.model import Environment
from ..errors import DockerUnavailable
from ..gpu_set import GpuSet

NO_RUNTIME = (
    "Docker has no NVIDIA GPU support on this host "
    "(no nvidia runtime, container toolkit or CDI spec)"
)


def gpu_problem(gpus: GpuSet, runtime: GpuRuntime) -> str | None:
    """The catalog line for an environment whose GPUs this engine cannot give; None if fine."""
    if runtime.kind is not None or not runtime.reachable or gpus.is_none:
        return None
    if gpus.is_all:
        return f"{NO_RUNTIME}: kernels start without GPUs"
    return f"GPUs {gpus} are configured but {NO_RUNTIME[0].lower()}{NO_RUNTIME[1:]}: " + (
        "kernels cannot start"
    )


def runtime_annotator(
    config: GpuEnv, log: logging.Logger | None = None
) -> Callable[[list[Environment]], None]:
    """A catalog annotator adding that problem to the Docker environments it concerns."""

    def annotate(environments: list[Environment]) -> None:
        docker_envs = [e for e in environments if e.kind == "docker"]
        if not docker_envs or config.scheduler == "swarm":
            return
        try:
            runtime = detect_runtime(docker_client(config.docker_host or None))
        except DockerUnavailable:
            return  # the catalog already reports Docker as down
        for env in docker_envs:
            gpus = config.environment_gpus(env.settings)
            problem = gpu_problem(gpus, runtime)
            if problem and problem not in env.problems:
                env.problems.append(problem)
            if problem and not gpus.is_all:
                env.cannot_start = problem

    return annotate
