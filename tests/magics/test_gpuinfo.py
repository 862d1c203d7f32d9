"""``%gpuinfo``'s view of one kernel, with the fake NVML standing in for a GPU host."""

from __future__ import annotations

import ast
import glob
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import jupyter_gpuenv
from jupyter_gpuenv.magics import gpuinfo as magic
from jupyter_gpuenv.magics.kernel_view import NO_GPU_SENTENCE, gather
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


KERNEL_SIDE = [
    "magics/gpuinfo.py",
    "magics/kernel_view.py",
    "gpu/nvml_adapter.py",
    "gpu/snapshot.py",
    "gpu/grant.py",
]


@pytest.mark.parametrize("name", KERNEL_SIDE)
def test_kernel_side_modules_are_stdlib_only_and_python38(name: str) -> None:
    tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"), feature_version=(3, 8))
    top_level = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            top_level.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top_level.add(node.module.split(".")[0])
    optional = {"torch", "IPython", "pynvml"}  # imported lazily, inside functions
    assert top_level - optional <= set(sys.stdlib_module_names)
    module_level = {
        (n.module or "").split(".")[0]
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and n.level == 0
    } | {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    assert not module_level & optional, "optional modules must be imported lazily"


def _python38() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for candidate in [*found, "/usr/bin/python3.8"]:
        if os.path.isfile(candidate):
            return candidate
    return None


SCRIPT = """
import json, os, sys
sys.path.insert(0, os.environ["REPO"])
from jupyter_gpuenv.magics.kernel_view import gather
from jupyter_gpuenv.magics.gpuinfo import render_html, render_text
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess
nvml = FakeNvml([FakeGpu(processes=[FakeProcess(os.getpid())])])
for source in (nvml, None):
    info = gather(nvml=source, environ={"CUDA_VISIBLE_DEVICES": "0"})
    render_html(info)
    print(json.dumps({"text": render_text(info), "heavy": sorted(
        m for m in ("docker", "tornado", "jupyter_server", "traitlets") if m in sys.modules)}))
"""


@pytest.mark.parametrize("python", [sys.executable, _python38()], ids=["current", "py38"])
def test_gpuinfo_runs_in_a_bare_interpreter(python: str | None) -> None:
    if python is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    # -S: no site-packages, like a kernel environment with none of our dependencies.
    out = subprocess.run(
        [python, "-S", "-c", SCRIPT],
        env={"REPO": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    fake, real = (json.loads(line) for line in out.stdout.splitlines())
    assert fake["text"].startswith("1 NVIDIA GPU visible to this kernel")
    assert "512 MiB" in fake["text"]  # this process's own memory
    assert real["text"].startswith(f"{NO_GPU_SENTENCE}: the NVML Python bindings")
    assert fake["heavy"] == real["heavy"] == []
