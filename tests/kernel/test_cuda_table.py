"""The driver table is NVIDIA's, and the lookups read it the way the release notes mean."""

from __future__ import annotations

import pytest

from jupyter_gpuenv.kernel import cuda_table
from jupyter_gpuenv.kernel.versions import (
    cuda_version_for_driver,
    format_cudnn,
    major_minor,
    minimum_driver,
    minor_compatibility_floor,
    parse_arch_list,
    parse_compute_capability,
    parse_version,
    version_at_least,
)


@pytest.mark.parametrize(
    ("cuda", "driver"),
    [
        # "CUDA Toolkit and Corresponding Driver Versions", Linux x86_64, GA rows.
        ("11.8", "520.61.05"),
        ("12.0", "525.60.13"),
        ("12.1", "530.30.02"),
        ("12.2", "535.54.03"),
        ("12.4", "550.54.14"),
        ("12.6", "560.28.03"),
        ("12.8", "570.26"),
        ("12.9", "575.51.03"),
        ("13.0", "580.65.06"),
        ("11.4", "470.42.01"),
        ("11.0", "450.51.05"),  # the 11.0.1 RC row (450.36.06) is not a release to run
    ],
)
def test_minimum_driver_per_cuda_minor_is_its_ga_row(cuda, driver):
    assert minimum_driver(cuda) == driver
    assert minimum_driver(f"{cuda}.1") == driver  # a patch level reads as its minor


def test_minor_version_compatibility_floors():
    assert minor_compatibility_floor("11.8") == "450.80.02"
    assert minor_compatibility_floor("12.1") == "525.60.13"
    assert minor_compatibility_floor("13.1") == "580"
    assert minor_compatibility_floor("10.2") is None  # before CUDA 11 there was none


def test_table_rows_are_newest_first_and_readable():
    rows = cuda_table.TOOLKIT_DRIVER_MINIMUM
    for label, minor, driver in rows:
        assert label.startswith(f"CUDA {minor}"), label
        assert parse_version(driver) is not None
    minors = [major_minor(minor) for _, minor, _ in rows]
    assert minors == sorted(minors, reverse=True)
    drivers = [parse_version(driver) for _, _, driver in rows]
    assert drivers == sorted(drivers, reverse=True)


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        ("470.82.01", "11.4"),
        ("520.61.05", "11.8"),
        ("525.60.13", "12.0"),
        ("530.30.02", "12.1"),
        ("535.104.05", "12.2"),
        ("565.57.01", "12.6"),
        ("570.124.06", "12.8"),
        ("580.65.06", "13.0"),
        ("590.44.01", "13.1"),
        ("340.29", None),
    ],
)
def test_cuda_version_supported_by_a_driver(driver, cuda):
    assert cuda_version_for_driver(driver) == cuda


def test_version_parsing():
    assert version_at_least("570.124.06", "570.26")
    assert not version_at_least("570.26", "570.124.06")
    assert version_at_least("580", "580")
    assert version_at_least("580.65.06", "580")
    assert not version_at_least("575.57.08", "580")
    assert major_minor(12040) == (12, 4)  # nvmlSystemGetCudaDriverVersion's integer
    assert major_minor("2.9.0+cu121") == (2, 9)
    assert parse_compute_capability("8.6") == (8, 6)
    assert parse_compute_capability([12, 0]) == (12, 0)
    assert parse_compute_capability("sm_100") == (10, 0)
    assert parse_compute_capability("8") is None
    assert format_cudnn(90100) == "9.1.0"
    assert format_cudnn("8902") == "8.9.2"


def test_arch_list_parsing():
    entries = parse_arch_list("sm_50 sm_90a compute_90 sm_100f sm_121 bogus")
    assert [(e.name, e.is_ptx, e.cc, e.variant) for e in entries] == [
        ("sm_50", False, (5, 0), ""),
        ("sm_90a", False, (9, 0), "a"),
        ("compute_90", True, (9, 0), ""),
        ("sm_100f", False, (10, 0), "f"),
        ("sm_121", False, (12, 1), ""),
    ]


def test_first_toolkit_per_architecture_is_consistent_with_the_driver_table():
    known = {minor for _, minor, _ in cuda_table.TOOLKIT_DRIVER_MINIMUM}
    for cc, cuda in cuda_table.FIRST_TOOLKIT_FOR_ARCH.items():
        assert cuda in known, (cc, cuda)
        assert parse_compute_capability(cc) is not None
