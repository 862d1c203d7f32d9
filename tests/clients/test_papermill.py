"""papermill injects parameters into a notebook that runs in a conda-prefix kernel."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

from tests.clients.conftest import stream_text, write_notebook

REPORT = """\
import json, os, sys
print(json.dumps({"doubled": x * 2, "prefix": sys.prefix,
                  "conda_prefix": os.environ.get("CONDA_PREFIX"),
                  "env": os.environ.get("JUPYTER_GPUENV_ENVIRONMENT_ID")}))
"""


def test_papermill_parameters_in_a_conda_prefix_kernel(
    tmp_path, conda_prefix_factory, jupyter_setup
):
    prefix = conda_prefix_factory(tmp_path / "envs" / "analysis")
    setup = jupyter_setup(conda_envs_dirs=[str(prefix.parent)])
    name, env_id = setup.kernel_of_kind("conda")
    parameters = new_code_cell("x = 1", metadata={"tags": ["parameters"]})
    source = write_notebook(setup.root / "in.ipynb", parameters, new_code_cell(REPORT))
    result = setup.root / "out.ipynb"

    setup.run(
        "papermill",
        str(source),
        str(result),
        "-k",
        name,
        "-p",
        "x",
        "3",
        "--start-timeout",
        "120",
        "--execution-timeout",
        "120",
    )

    nb = nbformat.read(result, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "x = 3" in injected[0].source
    assert nb.metadata["papermill"]["parameters"] == {"x": 3}
    report = json.loads(stream_text(result).strip().splitlines()[-1])
    assert report["doubled"] == 6
    assert Path(report["prefix"]).resolve() == prefix.resolve()
    assert report["conda_prefix"] == report["prefix"]
    assert report["env"] == env_id
