"""A notebook saved on one machine runs on another where the same environment has another
name and path (so another environment id and kernel name): ``jupyter gpuenv resolve
--write`` then ``jupyter execute``, as a user or a CI job would run them.

Machine A is a real server that records the environment on a real save; machine B is a
separate set of Jupyter folders whose config lists a copy of the conda env under another
name, next to a CPU build of the same PyTorch that must not be chosen.
"""

from __future__ import annotations

import json
import shutil
import uuid

import nbformat
import pytest

from tests.clients.conftest import stream_text
from tests.support.fake_torch import TORCH_CU121

TAG = uuid.uuid4().hex[:6]
CELL = """\
import os, torch
print('torch', torch.__version__, os.environ['JUPYTER_GPUENV_ENVIRONMENT_ID'])"""
TORCH_CPU = {**TORCH_CU121, "version": "2.9.0+cpu", "cuda": None, "cudnn": None, "arch_list": []}


@pytest.fixture
def machines(tmp_path, conda_prefix_factory):
    a = conda_prefix_factory(tmp_path / "machine-a" / "envs" / f"vision-{TAG}", torch=TORCH_CU121)
    b = conda_prefix_factory(tmp_path / "machine-b" / "envs" / f"copy-{TAG}", torch=TORCH_CU121)
    conda_prefix_factory(tmp_path / "machine-b" / "envs" / f"cpu-{TAG}", torch=TORCH_CPU)
    return a, b


@pytest.fixture
def jp_server_config(machines):
    from tests.support.server_config import server_config

    return server_config(conda_envs_dirs=[str(machines[0].parent)])


async def save_on_machine_a(jp_fetch, jp_root_dir):
    listing = json.loads((await jp_fetch("gpuenv", "api", "environments")).body)["environments"]
    (env,) = [e for e in listing if e["name"] == f"vision-{TAG}"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {
        "name": env["kernel_name"],
        "display_name": "x",
        "language": "python",
    }
    model = {"type": "notebook", "format": "json", "content": nb}
    body = {
        "path": "train.ipynb",
        "type": "notebook",
        "name": "",
        "kernel": {"name": env["kernel_name"]},
    }
    session = json.loads(
        (await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))).body
    )
    try:
        await jp_fetch("api", "contents", "train.ipynb", method="PUT", body=json.dumps(model))
    finally:
        await jp_fetch("api", "sessions", session["id"], method="DELETE")
    return env, jp_root_dir / "train.ipynb"


async def test_resolve_write_then_jupyter_execute_runs_it_elsewhere(
    jp_fetch, jp_root_dir, machines, jupyter_setup
):
    env_a, saved = await save_on_machine_a(jp_fetch, jp_root_dir)
    record = json.loads(saved.read_text())["metadata"]["gpuenv"]
    assert record["environment_id"] == env_a["id"] and record["torch_version"] == "2.9.0+cu121"

    setup = jupyter_setup(conda_envs_dirs=[str(machines[1].parent)])
    (kernel_b,) = [n for n, s in setup.kernels.items() if f"copy-{TAG}" in n]
    env_b = setup.kernels[kernel_b]["metadata"]["gpuenv"]["environment_id"]
    assert env_b != env_a["id"]
    notebook = setup.root / "train.ipynb"
    shutil.copy(saved, notebook)

    # Before: the kernel named in the notebook does not exist here.
    failed = setup.run("jupyter", "execute", str(notebook), ok=False)
    assert "No such kernel" in failed or "NoSuchKernel" in failed, failed

    out = setup.run("jupyter", "gpuenv", "resolve", "--write", str(notebook))
    assert out.strip() == kernel_b
    kernelspec = json.loads(notebook.read_text())["metadata"]["kernelspec"]
    assert kernelspec["name"] == kernel_b
    explained = json.loads(setup.run("jupyter", "gpuenv", "resolve", "--json", str(notebook)))
    assert explained["rule"] == "fingerprint" and explained["environment_id"] == env_b

    setup.run("jupyter", "execute", "--startup_timeout=120", "--output=executed", str(notebook))
    text = stream_text(setup.root / "executed.ipynb")
    assert text.strip() == f"torch 2.9.0+cu121 {env_b}", text
    setup.run("papermill", str(notebook), str(setup.root / "papermilled.ipynb"))
    text = stream_text(setup.root / "papermilled.ipynb")
    assert text.strip() == f"torch 2.9.0+cu121 {env_b}", text

    # export --notebook writes the environment.yml of the recorded environment's copy here.
    exported = setup.run("jupyter", "gpuenv", "export", "--notebook", str(notebook))
    assert f"name: copy-{TAG}" in exported and "pytorch=2.9.0" in exported, exported


def test_resolve_says_what_is_missing(tmp_path, jupyter_setup, conda_prefix_factory):
    cpu = conda_prefix_factory(tmp_path / "envs" / f"cpu-{TAG}", torch=TORCH_CPU)
    setup = jupyter_setup(conda_envs_dirs=[str(cpu.parent)])
    nb = nbformat.v4.new_notebook()
    nb.metadata["gpuenv"] = {
        "environment_id": "docker-trainer-12345678",
        "name": "trainer",
        "kind": "docker",
        "image": "trainer:2",
        "image_id": "sha256:" + "1" * 64,
        "torch_version": "2.4.1+cu124",
        "cuda_version": "12.4",
    }
    path = setup.root / "other.ipynb"
    nbformat.write(nb, path)
    out = setup.run("jupyter", "gpuenv", "resolve", "--write", str(path), ok=False)
    assert "trainer (docker)" in out and "PyTorch 2.4 with CUDA 12.4" in out, out
    assert "kernelspec" not in json.loads(path.read_text())["metadata"]
    plain = setup.root / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), plain)
    assert "metadata.gpuenv" in setup.run("jupyter", "gpuenv", "resolve", str(plain), ok=False)
