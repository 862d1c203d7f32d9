"""``c.GpuEnv.warm_kernels``: validated with readable problems, refused where it cannot work."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.config_check import checked_config, problems_json
from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.provisioning.warm.pool_config import (
    WarmSpec,
    environment_refusal,
    find_environment,
    mode_refusal,
    warm_specs,
)


def checked(value: object) -> GpuEnv:
    return checked_config(Config({"GpuEnv": {"warm_kernels": value}}))


def test_off_by_default() -> None:
    config = GpuEnv()
    assert config.warm_kernels == {}
    assert warm_specs(config) == [] and mode_refusal(config) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"torch": 2}, "entry 'torch' needs a dict like {\"count\": 1"),
        ({"torch": {"count": "2"}}, "'count': a number of kernels from 0 to 64"),
        ({"torch": {"count": 100}}, "'count': a number of kernels from 0 to 64"),
        ({"torch": {"count": 1, "size": 2}}, "keys among ['count', 'preimport']"),
        ({"torch": {"count": 1, "preimport": ["torch; rm -rf /"]}}, "'preimport': a list"),
        ({"torch": {"count": 1, "preimport": "torch"}}, "'preimport': a list"),
    ],
)
def test_invalid_entries_are_named_and_leave_warm_kernels_off(value: object, expected: str) -> None:
    config = checked(value)
    assert config.warm_kernels == {}
    (problem,) = problems_json(config)
    assert problem["setting"] == "c.GpuEnv.warm_kernels"
    assert expected in problem["expected"], problem


def test_valid_entries_become_pool_specs() -> None:
    config = checked({"torch": {"count": 2, "preimport": ["torch", "torch.nn"]}, "b": {"count": 0}})
    assert problems_json(config) == []
    specs = warm_specs(config)
    assert [s.key for s in specs] == ["b", "torch"]
    assert specs[1] == WarmSpec("torch", 2, ("torch", "torch.nn"), config.warm_kernel_max_age)


@pytest.mark.parametrize(
    ("settings", "mode"),
    [({"scheduler": "swarm"}, "Swarm"), ({"broker_url": "http://127.0.0.1:1/b/"}, "broker")],
)
def test_swarm_and_broker_modes_are_refused(settings: dict[str, str], mode: str) -> None:
    config = GpuEnv(warm_kernels={"torch": {"count": 1}}, **settings)
    refusal = mode_refusal(config)
    assert refusal is not None and mode in refusal and "scheduler = 'docker'" in refusal


def env(kind: str, name: str, env_id: str, **extra: object) -> Environment:
    return Environment(id=env_id, name=name, kind=kind, display_name=name,  # type: ignore[arg-type]
                       kernel_name=f"gpuenv-{env_id}", location={"prefix": "/x"},
                       ipykernel=True, python_executable="/x/bin/python", **extra)  # fmt: skip


def test_entries_match_ids_first_then_a_unique_name() -> None:
    envs = [env("conda", "torch", "conda-torch-1"), env("venv", "torch", "venv-torch-2")]
    assert find_environment(WarmSpec("venv-torch-2", 1), envs) is envs[1]
    assert find_environment(WarmSpec("torch", 1), envs) is None  # two of that name
    assert find_environment(WarmSpec("torch", 1), envs[:1]) is envs[0]


def test_environments_that_cannot_be_warm_say_why() -> None:
    assert environment_refusal(env("conda", "a", "a")) is None
    broken = env("venv", "b", "b", cannot_start="the prefix is gone")
    assert environment_refusal(broken) == "the prefix is gone"


def test_a_negative_max_age_is_refused_with_its_meaning() -> None:
    config = checked_config(Config({"GpuEnv": {"warm_kernel_max_age": -5}}))
    assert config.warm_kernel_max_age == 3600.0
    (problem,) = problems_json(config)
    assert "0 or more seconds (0: never)" in problem["expected"], problem
