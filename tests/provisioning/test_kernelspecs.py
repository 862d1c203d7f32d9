"""One kernelspec per catalog environment, beside the normal ones, without duplicates."""

from __future__ import annotations

import json
import sys

import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from jupyter_gpuenv.environments.model import Environment, environment_id, kernel_name_for
from jupyter_gpuenv.provisioning.kernelspecs import (
    GpuEnvKernelSpecManager,
    has_kernel,
    kernelspec_dict,
)
from tests.provisioning.conftest import environment_named
from tests.support.server_config import server_config


@pytest.fixture
def prefixes(tmp_path, conda_prefix_factory, venv_factory):
    return {
        "conda": conda_prefix_factory(tmp_path / "envs" / "vision"),
        "venv": venv_factory(tmp_path / "venvs" / "tools"),
    }


@pytest.fixture
def jp_server_config(prefixes):
    return server_config(
        conda_envs_dirs=[str(prefixes["conda"].parent)],
        venv_dirs=[str(prefixes["venv"].parent)],
    )


async def test_specs_for_catalog_environments_beside_the_normal_ones(jp_fetch, prefixes):
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert "python3" in specs
    for name, provisioner in (
        ("vision", "gpuenv-local-provisioner"),
        ("tools", "gpuenv-local-provisioner"),
    ):
        env = await environment_named(jp_fetch, name)
        assert env["kernel_name"] == kernel_name_for(env["id"])
        spec = specs[env["kernel_name"]]["spec"]
        assert spec["display_name"] == env["display_name"]
        assert spec["language"] == "python"
        assert spec["metadata"]["kernel_provisioner"] == {
            "provisioner_name": provisioner,
            "config": {"environment_id": env["id"]},
        }
        assert spec["metadata"]["gpuenv"]["environment_id"] == env["id"]
        # Clients that ignore provisioners run the launcher with the server's Python.
        assert spec["argv"] == [
            sys.executable,
            "-m",
            "jupyter_gpuenv.launch",
            "--environment",
            env["id"],
            "-f",
            "{connection_file}",
        ]
        logo = await jp_fetch("kernelspecs", env["kernel_name"], "logo-64x64.png")
        assert logo.body.startswith(b"\x89PNG")


async def test_on_disk_spec_of_the_same_name_is_not_listed_twice(
    jp_fetch, jp_data_dir, jp_serverapp
):
    env = await environment_named(jp_fetch, "vision")
    folder = jp_data_dir / "kernels" / env["kernel_name"]
    folder.mkdir(parents=True)
    on_disk = kernelspec_dict(
        Environment(
            **{
                **{k: v for k, v in env.items() if k in Environment.__dataclass_fields__},
            }
        )
    )
    on_disk["display_name"] = "written by an older install"
    (folder / "kernel.json").write_text(json.dumps(on_disk))
    ksm = jp_serverapp.kernel_spec_manager
    # jupyter_client itself finds the on-disk one ...
    assert KernelSpecManager.find_kernel_specs(ksm)[env["kernel_name"]] == str(folder)
    # ... and the listing holds one entry of that name: the live spec.
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert specs[env["kernel_name"]]["spec"]["display_name"] == env["display_name"]
    assert ksm.get_kernel_spec(env["kernel_name"]).display_name == env["display_name"]


def docker_env(**fields) -> Environment:
    env_id = environment_id("docker", "img", "img")
    values = dict(
        id=env_id,
        name="img",
        kind="docker",
        display_name="img (docker)",
        kernel_name=kernel_name_for(env_id),
        location={"image": "img:1", "image_id": "sha256:1", "conda_env": None},
    )
    values.update(fields)
    return Environment(**values)


def test_which_environments_get_a_kernel():
    assert has_kernel(docker_env(python_version="3.11", ipykernel=False))  # kernel layer
    assert has_kernel(docker_env(location={"image": "missing:1", "image_id": None}))
    assert not has_kernel(docker_env())  # probed: no python in the image
    local = dict(
        id="venv-x-1",
        name="x",
        kind="venv",
        display_name="x (venv)",
        kernel_name="gpuenv-venv-x-1",
        location={"prefix": "/p"},
    )
    assert not has_kernel(Environment(**local, ipykernel=False))
    assert has_kernel(Environment(**local, ipykernel=True, python_executable="/p/bin/python"))


def test_manager_without_a_server_builds_its_catalog_from_config_files(
    tmp_path, prefixes, monkeypatch
):
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps(server_config(venv_dirs=[str(prefixes["venv"].parent)]))
    )
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    ksm = GpuEnvKernelSpecManager()
    names = [n for n in ksm.find_kernel_specs() if n.startswith("gpuenv-")]
    assert len(names) == 1 and names[0].startswith("gpuenv-venv-tools-")
    spec = ksm.get_kernel_spec(names[0])
    assert spec.metadata["kernel_provisioner"]["provisioner_name"] == "gpuenv-local-provisioner"
    spec.metadata["changed"] = True  # callers get copies
    assert "changed" not in ksm.get_kernel_spec(names[0]).metadata
    with pytest.raises(NoSuchKernel):
        ksm.get_kernel_spec("gpuenv-venv-gone-00000000")
