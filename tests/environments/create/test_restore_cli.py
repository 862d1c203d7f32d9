"""``jupyter gpuenv restore NOTEBOOK``: a notebook saved in environment A carries A's record
with its ``--no-builds`` spec; A is removed; restore builds it again from the record (py-rattler,
the session's local channel, the wheelhouse for pip) and the notebook runs in it (nbclient)."""

from __future__ import annotations

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from jupyter_gpuenv.environments.fingerprint import environment_fingerprint
from jupyter_gpuenv.environments.model import Environment
from jupyter_gpuenv.environments.notebook_record import build_record
from jupyter_gpuenv.environments.record_spec import RecordSpecs
from tests.environments.create.test_create_cli import exported, gpuenv, listed

PIP_OFFLINE = ("PIP_NO_INDEX", "PIP_FIND_LINKS")


def notebook(metadata: dict) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata=metadata)
    code = "import os, sys\nprint(sys.prefix, os.environ.get('ALPHA_MODE'))"
    nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def saved_record(setup, name: str, **traits) -> dict:
    """The record the server's save hook writes for a kernel of ``name`` (same functions)."""
    data = listed(setup)[name]
    env = Environment(**{**data, "settings": {}})
    fingerprint = environment_fingerprint(env)
    spec = RecordSpecs(setup.config(**traits)).spec(env, fingerprint)
    return build_record(env, fingerprint, spec=spec).to_json()


async def test_a_removed_environment_is_restored_and_the_notebook_runs(
    create_setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    yml = create_setup.environment_yml(
        ["python", "pip", "gpuenv-demo", "gpuenv-tool"],
        name="alpha",
        pip=[*create_setup.pip_offline(), "ipykernel"],
        variables={"ALPHA_MODE": "on"},
    )
    gpuenv(create_setup, "create", "-f", str(yml), "--cuda", "12.4")
    before = exported(create_setup, "alpha")
    record = saved_record(create_setup, "alpha")
    spec = record["spec"]
    assert spec and "gpuenv-demo=1.0" in spec and "ALPHA_MODE" in spec
    assert "prefix:" not in spec and str(create_setup.envs) not in spec  # no host folder
    path = create_setup.root / "train.ipynb"
    kernelspec = {"name": record["environment_id"], "display_name": "old", "language": "python"}
    nbformat.write(notebook({"gpuenv": record, "kernelspec": kernelspec}), str(path))

    gpuenv(create_setup, "remove", "alpha", "--yes")
    assert "alpha" not in listed(create_setup)

    unasked = gpuenv(create_setup, "restore", str(path), check=False)
    assert unasked.returncode == 1 and "confirm with --yes" in unasked.stderr
    assert create_setup.leftovers() == []

    pip = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(create_setup.wheelhouse)}
    done = gpuenv(create_setup, "restore", str(path), "--yes", "--cuda", "12.4", **pip)
    alpha = create_setup.envs / "alpha"
    assert f"Creating {alpha} with rattler (CUDA 12.4 (requested))" in done.stderr
    assert "pip:" in done.stderr and f"Created {alpha} with rattler" in done.stdout
    assert exported(create_setup, "alpha") == before  # same names and versions, variables
    assert (alpha / "share" / "gpuenv-demo" / "variant").read_text() == "cuda\n"

    restored = listed(create_setup)["alpha"]
    saved = nbformat.read(str(path), as_version=4)
    assert saved.metadata["kernelspec"]["name"] == restored["kernel_name"]
    assert saved.metadata["gpuenv"]["environment_id"] == restored["id"]
    assert saved.metadata["gpuenv"]["spec"] == spec  # restorable again elsewhere

    again = gpuenv(create_setup, "restore", str(path))  # present: nothing asked, nothing built
    assert f"alpha is on this machine: {restored['display_name']}" in again.stdout

    gpuenv(create_setup, "kernelspecs", "install")
    for key, value in create_setup.cli_environ().items():
        if key.startswith("JUPYTER_"):
            monkeypatch.setenv(key, value)
    for key in PIP_OFFLINE:
        monkeypatch.delenv(key, raising=False)
    manager = AsyncKernelManager(
        kernel_name=saved.metadata["kernelspec"]["name"], kernel_spec_manager=KernelSpecManager()
    )
    client = NotebookClient(saved, km=manager, timeout=120)
    await client.async_execute()
    text = saved.cells[0].outputs[0]["text"]
    assert text.split() == [str(alpha), "on"]


def test_docker_records_name_the_image_and_records_without_spec_say_why(create_setup) -> None:
    image = {
        "environment_id": "img1",
        "name": "ghcr.io/lab/train",
        "kind": "docker",
        "display_name": "train",
        "image": "ghcr.io/lab/train:2.1",
        "image_id": "sha256:" + "1" * 64,
        "image_digest": "ghcr.io/lab/train@sha256:" + "2" * 64,
    }
    path = create_setup.root / "image.ipynb"
    nbformat.write(notebook({"gpuenv": image}), str(path))
    done = gpuenv(create_setup, "restore", str(path), "--yes", check=False)
    assert done.returncode == 1, done.stderr
    assert f"docker pull ghcr.io/lab/train@sha256:{'2' * 64}" in done.stdout
    assert "image: ghcr.io/lab/train:2.1" in done.stdout

    conda = {"environment_id": "c1", "name": "gone", "kind": "conda", "display_name": "gone"}
    path = create_setup.root / "nospec.ipynb"
    nbformat.write(notebook({"gpuenv": conda}), str(path))
    done = gpuenv(create_setup, "restore", str(path), "--yes", "--json", check=False)
    assert done.returncode == 1
    assert "carries no environment spec" in done.stderr and "notebook_record_spec" in done.stderr
    assert create_setup.leftovers() == []


def test_the_spec_is_left_out_when_off_or_too_large(create_setup) -> None:
    yml = create_setup.environment_yml(["gpuenv-lib=1.0"], name="small")
    gpuenv(create_setup, "create", "-f", str(yml))
    assert saved_record(create_setup, "small")["spec"]
    assert "spec" not in saved_record(create_setup, "small", notebook_record_spec="off")
    tiny = saved_record(create_setup, "small", notebook_record_spec_max_bytes=20)
    assert "spec" not in tiny and tiny["name"] == "small"  # still a record: the rest is kept
