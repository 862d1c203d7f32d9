"""GPU grants (per-user lists) and CUDA_VISIBLE_DEVICES, with the runtimes' rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jupyter_gpuenv.gpu.grant import (
    GpuGrant,
    apply_cuda_visible_devices,
    parse_gpu_list,
    read_user_grant,
)


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("all", None),
        (" ALL ", None),
        (None, None),
        ("none", ()),
        ("void", ()),
        ("", ()),
        ("0,2", ("0", "2")),
        ("GPU-aa, MIG-bb ,", ("GPU-aa", "MIG-bb")),
        ([0, "GPU-cc"], ("0", "GPU-cc")),
        (["1", "all"], None),
    ],
)
def test_parse_gpu_list(value: object, ids: tuple[str, ...] | None) -> None:
    assert parse_gpu_list(value).ids == ids  # type: ignore[arg-type]


def test_allows_by_index_or_uuid_case_insensitively() -> None:
    grant = parse_gpu_list("1,GPU-ABC")
    assert grant.allows(1, "GPU-x") and grant.allows(5, "gpu-abc")
    assert not grant.allows(0, "GPU-def") and not grant.allows(None, None)
    assert GpuGrant().allows(7, None)
    assert not parse_gpu_list("none").allows(0, "GPU-abc")


def test_user_grant_prefers_the_configured_variable() -> None:
    environ = {"GPUENV_GPUS": "2", "NVIDIA_VISIBLE_DEVICES": "0,1"}
    grant = read_user_grant("GPUENV_GPUS", environ)
    assert grant.ids == ("2",) and grant.source == "GPUENV_GPUS"
    grant = read_user_grant("GPUENV_GPUS", {"NVIDIA_VISIBLE_DEVICES": "GPU-aa"})
    assert grant.ids == ("GPU-aa",) and grant.source == "NVIDIA_VISIBLE_DEVICES"
    grant = read_user_grant("TEAM_GPUS", {"TEAM_GPUS": "none"})
    assert grant.is_none and grant.to_json() == "none"
    unset = read_user_grant("GPUENV_GPUS", {})
    assert unset.is_all and unset.source is None and unset.to_json() == "all"


@dataclass
class Dev:
    index: int
    uuid: str


DEVS = [Dev(0, "GPU-1111aaaa"), Dev(1, "GPU-2222bbbb"), Dev(2, "GPU-3333cccc")]


def visible(value: str | None) -> list[int]:
    chosen = apply_cuda_visible_devices(value, DEVS, lambda d: d.index, lambda d: d.uuid)
    return [d.index for d in chosen]


@pytest.mark.parametrize(
    ("value", "nvml_indexes"),
    [
        (None, [0, 1, 2]),  # unset: everything, in order
        ("2,0", [2, 0]),  # remapped: CUDA device 0 is NVML GPU 2
        ("", []),  # empty hides everything
        ("-1", []),
        ("1,7,0", [1]),  # parsing stops at the first unknown entry
        ("1,1,0", [1]),  # ... and at a repeat
        ("GPU-3333,0", [2, 0]),  # UUID prefixes work
        ("GPU-", []),  # an ambiguous prefix matches nothing
    ],
)
def test_cuda_visible_devices(value: str | None, nvml_indexes: list[int]) -> None:
    assert visible(value) == nvml_indexes
