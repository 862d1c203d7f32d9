"""GpuSet: the one value for "which GPUs", and the per-user grant read into it."""

from __future__ import annotations

import pytest

from jupyter_gpuenv.gpu.grant import read_user_grant
from jupyter_gpuenv.gpu_set import GpuSet, GpuSetError


@pytest.mark.parametrize(
    ("value", "ids", "count"),
    [
        ("all", None, None),
        (" ALL ", None, None),
        (None, None, None),
        ("none", (), None),
        ("void", (), None),
        ("", (), None),
        ("0,2", ("0", "2"), None),
        ("GPU-aa, MIG-bb ,", ("GPU-aa", "MIG-bb"), None),
        ([0, "GPU-cc"], ("0", "GPU-cc"), None),
        (["1", "all"], None, None),
        ("1,1", ("1",), None),
        (2, None, 2),
        (0, (), None),
    ],
)
def test_parse(value: object, ids: tuple[str, ...] | None, count: int | None) -> None:
    parsed = GpuSet.parse(value)
    assert (parsed.ids, parsed.count) == (ids, count)


@pytest.mark.parametrize("value", [True, -1, [{}], {"a": 1}, "0,../x", ["GPU-"], 1.5])
def test_parse_refuses_what_names_no_gpus(value: object) -> None:
    with pytest.raises(GpuSetError):
        GpuSet.parse(value)


def test_allows_by_index_or_uuid_with_one_loose_rule() -> None:
    gpus = GpuSet.parse("01,GPU-ABC")
    assert gpus.allows(1, "GPU-x") and gpus.allows(5, "gpu-abc")
    assert not gpus.allows(0, "GPU-def") and not gpus.allows(None, None)
    assert GpuSet.all().allows(7, None)
    assert not GpuSet.none().allows(0, "GPU-abc")
    assert GpuSet(count=1).allows(3, None)


def test_intersect_keeps_the_first_order_and_compares_loosely() -> None:
    assert GpuSet.parse("2,01,GPU-AA").intersect(GpuSet.parse("1,gpu-aa")).ids == ("01", "GPU-AA")
    assert GpuSet.all().intersect(GpuSet.parse("3")).ids == ("3",)
    assert GpuSet.parse("3").intersect(GpuSet.none()).is_none
    assert GpuSet.parse("1").intersect(GpuSet.parse("2")).is_none
    assert GpuSet(count=2).intersect(GpuSet.all()) == GpuSet(count=2)
    assert GpuSet(count=2).intersect(GpuSet(count=1)) == GpuSet(count=1)
    assert GpuSet(count=1).intersect(GpuSet.parse("4,5")).ids == ("4",)


def test_covers_is_subset() -> None:
    allowed = GpuSet.parse("0,1")
    assert allowed.covers(GpuSet.parse("1")) and allowed.covers(GpuSet.none())
    assert not allowed.covers(GpuSet.parse("2")) and not allowed.covers(GpuSet.all())
    assert allowed.covers(GpuSet(count=2)) and not allowed.covers(GpuSet(count=3))
    assert GpuSet.all().covers(GpuSet(count=8))
    assert not GpuSet.none().covers(GpuSet(count=1))
    assert GpuSet(count=2).covers(GpuSet(count=1)) and not GpuSet(count=1).covers(GpuSet.all())


def test_outputs() -> None:
    assert GpuSet.parse("0,GPU-a1").to_json() == ["0", "GPU-a1"]
    assert GpuSet.all().to_json() == "all" and GpuSet.none().to_json() == "none"
    assert GpuSet(count=2).to_json() == 2 and str(GpuSet(count=2)) == "any 2"
    assert GpuSet.none().nvidia_visible_devices() == "void"
    assert GpuSet.parse("1,2").nvidia_visible_devices() == "1,2"
    with pytest.raises(GpuSetError):
        GpuSet(count=1).nvidia_visible_devices()


def test_source_is_not_part_of_equality() -> None:
    assert GpuSet.parse("1", source="GPUENV_GPUS") == GpuSet.parse("1")
    assert GpuSet.parse("1", source="GPUENV_GPUS").describe() == "GPUENV_GPUS=1"


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
