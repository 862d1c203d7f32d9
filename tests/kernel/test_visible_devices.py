"""CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES as the runtimes apply them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jupyter_gpuenv.kernel.visible_devices import (
    apply_cuda_visible_devices,
    matches,
    nvidia_visible_ids,
)


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


def test_nvidia_visible_devices() -> None:
    assert nvidia_visible_ids(None) is None and nvidia_visible_ids("all") is None
    assert nvidia_visible_ids("void") == [] and nvidia_visible_ids("none") == []
    assert nvidia_visible_ids("0, GPU-aa") == ["0", "GPU-aa"]
    assert matches("01", 1, None) and matches("gpu-AA", None, "GPU-aa")
    assert not matches("1", None, "GPU-1")
