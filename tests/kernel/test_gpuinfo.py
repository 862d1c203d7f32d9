"""``%gpuinfo``'s view of one kernel, with the fake NVML standing in for a GPU host."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import jupyter_gpuenv
from jupyter_gpuenv.kernel import gpuinfo as magic
from jupyter_gpuenv.kernel.kernel_view import NO_GPU_SENTENCE, gather
from tests.support.fake_nvml import NVML_ERROR_DRIVER_NOT_LOADED, FakeGpu, FakeMig, FakeNvml
from tests.support.fake_nvml import FakeProcess as Proc

PACKAGE = Path(jupyter_gpuenv.__file__).parent
REPO = PACKAGE.parent
GiB = 2**30


def host(*, own_pid: int | None = None) -> FakeNvml:
    """NVML index 0: an RTX 3090 (this process uses 1 GiB of it); 1: an A100."""
    procs = [Proc(own_pid, GiB)] if own_pid else []
    return FakeNvml(
        [
            FakeGpu(name="NVIDIA GeForce RTX 3090", processes=procs),
            FakeGpu(name="NVIDIA A100-SXM4-80GB", compute_capability=(8, 0)),
        ],
        driver_version="550.54.15",
        cuda_driver_version=12040,
    )


def test_all_gpus_and_this_processs_memory() -> None:
    info = gather(nvml=host(own_pid=os.getpid()), environ={}, with_torch=False)
    assert info.available and info.headline == "2 NVIDIA GPUs visible to this kernel"
    assert [(d.cuda_index, d.nvml_index) for d in info.devices] == [(0, 0), (1, 1)]
    assert info.devices[0].own_memory == GiB and info.devices[1].own_memory is None
    assert (info.driver_version, info.cuda_driver_version) == ("550.54.15", "12.4")
    assert any("fastest first" in note for note in info.notes)


def test_cuda_visible_devices_remaps_indexes() -> None:
    info = gather(nvml=host(), environ={"CUDA_VISIBLE_DEVICES": "1"}, with_torch=False)
    (device,) = info.devices
    assert (device.cuda_index, device.nvml_index) == (0, 1)
    assert device.name == "NVIDIA A100-SXM4-80GB" and device.compute_capability == "8.0"
    text = magic.render_text(info)
    assert "CUDA_VISIBLE_DEVICES=1" in text and "NVIDIA A100-SXM4-80GB" in text


def test_cuda_visible_devices_hiding_everything() -> None:
    info = gather(nvml=host(), environ={"CUDA_VISIBLE_DEVICES": ""}, with_torch=False)
    assert not info.available and info.devices == []
    assert info.headline == f"{NO_GPU_SENTENCE}: CUDA_VISIBLE_DEVICES='' hides every GPU"


def test_nvidia_visible_devices_outside_a_container_filters_by_uuid() -> None:
    nvml = host()
    wanted = nvml.gpus[1].uuid
    info = gather(nvml=nvml, environ={"NVIDIA_VISIBLE_DEVICES": wanted}, with_torch=False)
    assert [d.nvml_index for d in info.devices] == [1]
    assert any("only takes effect in containers" in n for n in info.notes)


def test_nvidia_visible_devices_already_applied_by_the_runtime_is_left_alone() -> None:
    # In a container given GPU 3 only, NVML shows one GPU (index 0 there).
    nvml = FakeNvml([FakeGpu()])
    info = gather(nvml=nvml, environ={"NVIDIA_VISIBLE_DEVICES": "3"}, with_torch=False)
    assert [d.cuda_index for d in info.devices] == [0]


def test_mig_slices_are_the_cuda_devices() -> None:
    mig = FakeMig(name="NVIDIA A100 MIG 3g.40gb", memory_total=40 * GiB)
    nvml = FakeNvml([FakeGpu(name="NVIDIA A100", mig_mode=1, mig_slots=[mig])])
    info = gather(nvml=nvml, environ={"CUDA_VISIBLE_DEVICES": mig.uuid}, with_torch=False)
    (device,) = info.devices
    assert device.mig_device_uuid == mig.uuid and device.memory_total == 40 * GiB
    assert device.name == "NVIDIA A100 MIG 3g.40gb"


def test_no_driver_is_one_sentence_and_no_traceback() -> None:
    nvml = FakeNvml([FakeGpu()], init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    info = gather(nvml=nvml, environ={}, with_torch=False)
    text = magic.render_text(info)
    assert text.splitlines()[0].startswith(f"{NO_GPU_SENTENCE}: NVIDIA driver not loaded")
    assert "Traceback" not in text


def test_html_and_text_show_the_same_facts() -> None:
    info = gather(nvml=host(own_pid=os.getpid()), environ={}, with_torch=False)
    display = magic.GpuInfoDisplay(info)
    html, text = display._repr_html_(), repr(display)
    for fact in ("NVIDIA GeForce RTX 3090", "550.54.15", "12.4", "1.0 GiB"):
        assert fact in html and fact in text
    assert html.startswith("<div") and "<table>" in html and "<script" not in html


def test_json_flag_returns_a_dict(capsys: pytest.CaptureFixture[str]) -> None:
    data = magic.gpuinfo("--json", nvml=host())
    assert isinstance(data, dict)
    assert data["available"] is True and len(data["devices"]) == 2
    assert data["torch"]["build"] in ("CPU build",) or data["torch"]["installed"]
    json.dumps(data)  # JSON-serialisable as returned
    assert magic.gpuinfo("--bogus") is None
    assert "usage: %gpuinfo" in capsys.readouterr().out


def test_a_failure_inside_is_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    class Exploding(FakeNvml):
        def nvmlDeviceGetCount(self) -> int:
            raise RuntimeError("bindings crashed")

    assert magic.gpuinfo("", nvml=Exploding([FakeGpu()])) is None
    out = capsys.readouterr().out
    assert out.startswith("%gpuinfo could not read the GPU status: RuntimeError")
    data = magic.gpuinfo("--json", nvml=Exploding([FakeGpu()]))
    assert data == {
        "available": False,
        "reason": "%gpuinfo failed: RuntimeError: bindings crashed",
    }


def test_load_ipython_extension_registers_the_magic() -> None:
    registered: dict[str, Any] = {}

    class Shell:
        def register_magic_function(self, fn: Any, magic_kind: str, magic_name: str) -> None:
            registered[magic_name] = (fn, magic_kind)

    jupyter_gpuenv.load_ipython_extension(Shell())
    fn, kind = registered["gpuinfo"]
    assert kind == "line" and "%gpuinfo" in (fn.__doc__ or "")
