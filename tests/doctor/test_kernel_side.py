"""The checks run inside kernels: standard library only, on Python 3.8 and later."""

from __future__ import annotations

import ast
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import jupyter_gpuenv

PACKAGE = Path(jupyter_gpuenv.__file__).parent
REPO = PACKAGE.parent
KERNEL_SIDE_MODULES = ["cuda_table.py", "versions.py", "host_info.py", "checks.py"]

SCRIPT = """
import json, sys
from jupyter_gpuenv.doctor.checks import HostInfo, evaluate
env = {"kind": "conda", "torch_version": "2.9.0+cu121", "cuda_version": "12.1",
       "cudnn_version": "90100", "torch_arch_list": ["sm_70", "sm_80", "sm_90"]}
result = evaluate(env, HostInfo.hypothetical_host("470.82.01", "10.0"))
heavy = sorted(m for m in ("docker", "tornado", "jupyter_server", "traitlets", "yaml")
               if m in sys.modules)
print(json.dumps({"result": result.to_json(), "heavy": heavy}))
"""


@pytest.mark.parametrize("name", KERNEL_SIDE_MODULES)
def test_kernel_side_modules_parse_as_python_38(name):
    source = (PACKAGE / "doctor" / name).read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    first = next(n for n in tree.body if not isinstance(n, ast.Expr))
    assert isinstance(first, ast.ImportFrom) and first.module == "__future__"


def _python38() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for candidate in found + ["/usr/bin/python3.8"]:
        if os.path.isfile(candidate):
            return candidate
    return None


@pytest.mark.parametrize("python", [sys.executable, _python38()], ids=["current", "py38"])
def test_checks_run_in_a_bare_interpreter(python):
    if python is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    # -S: no site-packages, like a kernel of an environment that has none of our deps.
    result = subprocess.run(
        [python, "-S", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["heavy"] == []
    assert out["result"]["verdict"] == "error"
    messages = [f["message"] for f in out["result"]["findings"]]
    assert any("no kernel image for sm_100" in m for m in messages)
    assert any("needs driver ≥ 530.30.02" in m for m in messages)
