"""jupyter_gpuenv/kernel runs inside kernels: standard library only, Python 3.8 and later,
and nothing of the rest of the package. Checked by globbing the folder (no hand-kept list)
and by running it, copied alone under the name kernels import it by, in bare interpreters."""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import jupyter_gpuenv
from jupyter_gpuenv.kernel import KERNEL_PACKAGE

KERNEL_DIR = Path(jupyter_gpuenv.__file__).parent / "kernel"
REPO = KERNEL_DIR.parent.parent
MODULES = sorted(p.name for p in KERNEL_DIR.glob("*.py"))
# Present in a kernel or not; only ever imported inside functions.
OPTIONAL = {"torch", "IPython", "pynvml"}


def test_the_folder_holds_the_kernel_side_modules() -> None:
    assert {"gpuinfo.py", "kernel_view.py", "nvml.py", "probe_script.py"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_is_python38_stdlib_and_self_contained(name: str) -> None:
    tree = ast.parse((KERNEL_DIR / name).read_text(encoding="utf-8"), feature_version=(3, 8))
    absolute: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            absolute.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                absolute.add((node.module or "").split(".")[0])
            else:
                assert node.level == 1, f"{name} imports from outside the kernel package"
    absolute.discard("__future__")
    assert absolute - OPTIONAL <= set(sys.stdlib_module_names), absolute
    module_level = {
        (n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)
    } | {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    assert not module_level & OPTIONAL, "optional modules must be imported lazily"


def python38() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for candidate in [*found, "/usr/bin/python3.8"]:
        if os.path.isfile(candidate):
            return candidate
    return None


SCRIPT = """
import json, os, sys
sys.path.insert(0, os.environ["KERNEL_SIDE"])
sys.path.insert(1, os.environ["REPO"])
from jupyter_gpuenv_kernel.compatibility import HostInfo, evaluate
from jupyter_gpuenv_kernel.gpuinfo import render_text
from jupyter_gpuenv_kernel.kernel_view import gather
from jupyter_gpuenv_kernel import probe_script
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess
env = {"kind": "conda", "torch_version": "2.9.0+cu121", "cuda_version": "12.1",
       "cudnn_version": "90100", "torch_arch_list": ["sm_70", "sm_80", "sm_90"]}
result = evaluate(env, HostInfo.hypothetical_host("470.82.01", "10.0"))
nvml = FakeNvml([FakeGpu(processes=[FakeProcess(os.getpid())])])
texts = [render_text(gather(nvml=n, environ={"CUDA_VISIBLE_DEVICES": "0"})) for n in (nvml, None)]
heavy = sorted(m for m in ("docker", "tornado", "jupyter_server", "traitlets", "yaml",
               "jupyter_gpuenv") if m in sys.modules)
print(json.dumps({"result": result.to_json(), "texts": texts, "heavy": heavy,
                  "probe": bool(probe_script.source())}))
"""


@pytest.mark.parametrize("python", [sys.executable, python38()], ids=["current", "py38"])
def test_the_folder_alone_runs_in_a_bare_interpreter(python: str | None, tmp_path: Path) -> None:
    if python is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    # Only the kernel folder, under the name kernels import it by, as containers get it.
    shutil.copytree(KERNEL_DIR, tmp_path / KERNEL_PACKAGE, ignore=shutil.ignore_patterns("*.pyc"))
    # -S: no site-packages, like a kernel of an environment that has none of our deps.
    result = subprocess.run(
        [python, "-S", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KERNEL_SIDE": str(tmp_path), "REPO": str(REPO), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["heavy"] == []
    assert out["result"]["verdict"] == "error"
    messages = [f["message"] for f in out["result"]["findings"]]
    assert any("no kernel image for sm_100" in m for m in messages)
    assert any("needs driver ≥ 530.30.02" in m for m in messages)
    fake, real = out["texts"]
    assert fake.startswith("1 NVIDIA GPU visible to this kernel") and "512 MiB" in fake
    assert "the NVML Python bindings" in real
    assert out["probe"]
