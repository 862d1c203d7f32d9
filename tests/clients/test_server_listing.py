"""A server lists each gpuenv kernel once, whether or not its spec is also on disk."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.provisioning.conftest import server_config


@pytest.fixture
def env_dirs(tmp_path, conda_prefix_factory, venv_factory):
    conda_prefix_factory(tmp_path / "envs" / "vision")
    conda_prefix_factory(tmp_path / "envs" / "audio")
    venv_factory(tmp_path / "venvs" / "tools")
    return {
        "conda_envs_dirs": [str(tmp_path / "envs")],
        "venv_dirs": [str(tmp_path / "venvs")],
    }


@pytest.fixture
def jp_server_config(env_dirs):
    return server_config(**env_dirs)


async def test_on_disk_and_live_specs_are_listed_once(
    jp_fetch, jp_data_dir, jp_env_jupyter_path, env_dirs, jupyter_setup
):
    setup = jupyter_setup(**env_dirs)
    # Also for this user and into the server's own prefix, as people do.
    setup.env["JUPYTER_DATA_DIR"] = str(jp_data_dir)
    setup.run("jupyter", "gpuenv", "kernelspecs", "install", "--user")
    setup.run(
        "jupyter",
        "gpuenv",
        "kernelspecs",
        "install",
        "--prefix",
        str(jp_env_jupyter_path.parents[1]),
    )
    installed = set(setup.kernels)
    assert len(installed) == 3
    for name in installed:
        assert (jp_data_dir / "kernels" / name / "kernel.json").exists()
        assert (jp_env_jupyter_path / "kernels" / name / "kernel.json").exists()

    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    environments = json.loads((await jp_fetch("gpuenv", "api", "environments")).body)
    ours = {n: s["spec"] for n, s in specs.items() if "gpuenv" in s["spec"]["metadata"]}
    assert set(ours) == installed == {e["kernel_name"] for e in environments["environments"]}
    per_env = Counter(spec["metadata"]["gpuenv"]["environment_id"] for spec in ours.values())
    assert set(per_env.values()) == {1}
    assert len({spec["display_name"] for spec in ours.values()}) == len(ours)
    for name, spec in ours.items():
        on_disk = setup.kernels[name]
        assert spec["display_name"] == on_disk["display_name"]
        assert spec["metadata"]["kernel_provisioner"] == on_disk["metadata"]["kernel_provisioner"]
    assert "python3" in specs
