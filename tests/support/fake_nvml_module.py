"""The fake NVML as an importable ``pynvml`` for processes the tests start (servers, CLIs).

``fake_nvml_env(tmp_path, driver_version=..., gpus=[...])`` writes a folder holding a
``pynvml.py`` that builds a :class:`tests.support.fake_nvml.FakeNvml` from a JSON spec in
``GPUENV_TEST_FAKE_NVML``, and returns the variables that put it ahead of the real
bindings on ``PYTHONPATH``. Only the library boundary is replaced: the process's own GPU
adapter, doctor and sampler run unchanged over it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jupyter_gpuenv

REPO = Path(jupyter_gpuenv.__file__).resolve().parent.parent
SPEC_VAR = "GPUENV_TEST_FAKE_NVML"

MODULE = '''\
"""pynvml for a test process: tests.support.fake_nvml.FakeNvml built from $SPEC_VAR."""
import json as _json
import os as _os

from tests.support.fake_nvml import FakeGpu as _FakeGpu, FakeNvml as _FakeNvml

_spec = _json.loads(_os.environ["SPEC_VAR"])
_fake = _FakeNvml(
    gpus=[
        _FakeGpu(name=g["name"], uuid=g["uuid"], compute_capability=tuple(g["cc"]))
        for g in _spec["gpus"]
    ],
    driver_version=_spec["driver_version"],
    cuda_driver_version=_spec["cuda_driver_version"],
)


def __getattr__(name):
    return getattr(_fake, name)
'''.replace("SPEC_VAR", SPEC_VAR)


def fake_nvml_env(
    folder: Path, driver_version: str, cuda_driver_version: int, gpus: list[dict[str, Any]]
) -> dict[str, str]:
    """Variables for a process whose ``import pynvml`` gets this fake host.

    ``gpus``: ``[{"name": ..., "uuid": ..., "cc": [8, 6]}, ...]``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pynvml.py").write_text(MODULE, encoding="utf-8")
    spec = {
        "driver_version": driver_version,
        "cuda_driver_version": cuda_driver_version,
        "gpus": gpus,
    }
    path = os.pathsep.join([str(folder), str(REPO)])
    return {SPEC_VAR: json.dumps(spec), "PYTHONPATH": path}
