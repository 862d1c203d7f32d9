"""Kernels in conda envs and venvs, activated as ``conda activate`` / ``source activate`` would.

Through an in-process Jupyter server (REST + websocket), and through plain jupyter_client
reading c.GpuEnv from the config files.
"""

from __future__ import annotations

import json

import pytest
from jupyter_client.manager import AsyncKernelManager

from jupyter_gpuenv.provisioning.kernelspecs import GpuEnvKernelSpecManager
from tests.provisioning.conftest import environment_named
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.server_config import server_config

ACTIVATE_SCRIPTS = {
    # Sourced in name order; the second relies on the first, as real packages' scripts do.
    "10-cuda.sh": (
        'export CUDA_HOME="$CONDA_PREFIX/cuda"\n'
        'export LD_LIBRARY_PATH="$CONDA_PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\n'
    ),
    "20-nccl.sh": 'export NCCL_HOME="$CUDA_HOME/nccl"\nunset GPUENV_TEST_UNSET_ME\n',
}

REPORT = """
import json, os, sys, jupyter_gpuenv_kernel
keys = ["CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_PROMPT_MODIFIER", "CONDA_SHLVL",
        "CUDA_HOME", "NCCL_HOME", "LD_LIBRARY_PATH", "FROM_STATE", "VIRTUAL_ENV",
        "GPUENV_TEST_UNSET_ME", "JUPYTER_GPUENV_ENVIRONMENT_ID", "JUPYTER_GPUENV_KERNEL_ID",
        "JUPYTER_GPUENV_KERNEL_SIDE"]
print(json.dumps({
    "prefix": sys.prefix,
    "path0": os.environ["PATH"].split(os.pathsep)[0],
    "env": {k: os.environ.get(k) for k in keys},
    "package": jupyter_gpuenv_kernel.__file__,
    "magic": "gpuinfo" in get_ipython().magics_manager.magics["line"],
}))
"""


@pytest.fixture
def prefixes(tmp_path, conda_prefix_factory, venv_factory, monkeypatch):
    for var in ("CONDA_PREFIX", "CONDA_SHLVL", "CONDA_DEFAULT_ENV", "CONDA_EXE", "VIRTUAL_ENV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GPUENV_TEST_UNSET_ME", "server value")
    conda = conda_prefix_factory(tmp_path / "envs" / "vision", activate_scripts=ACTIVATE_SCRIPTS)
    (conda / "conda-meta" / "state").write_text(json.dumps({"env_vars": {"FROM_STATE": "1"}}))
    venv = venv_factory(tmp_path / "venvs" / "plainvenv")
    bare = venv_factory(tmp_path / "venvs" / "nokernel", ipykernel=False)
    return {"conda": conda, "venv": venv, "bare": bare}


@pytest.fixture
def jp_server_config(prefixes):
    return server_config(
        conda_envs_dirs=[str(prefixes["conda"].parent)],
        venv_dirs=[str(prefixes["venv"].parent)],
    )


async def kernel_report(jp_fetch, jp_ws_fetch, kernel_name: str):
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": kernel_name})
    )
    kernel_id = json.loads(response.body)["id"]
    ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
    return kernel_id, ws, json.loads((await ws.run(REPORT)).text)


async def test_conda_kernel_is_activated(jp_fetch, jp_ws_fetch, prefixes):
    prefix = str(prefixes["conda"])
    env = await environment_named(jp_fetch, "vision")
    kernel_id, ws, report = await kernel_report(jp_fetch, jp_ws_fetch, env["kernel_name"])
    seen = report["env"]
    assert report["prefix"] == seen["CONDA_PREFIX"] == prefix
    assert report["path0"] == f"{prefix}/bin"
    assert seen["CONDA_DEFAULT_ENV"] == "vision"
    assert seen["CONDA_PROMPT_MODIFIER"] == "(vision) "
    assert seen["CONDA_SHLVL"] == "1"
    assert seen["CUDA_HOME"] == f"{prefix}/cuda"
    assert seen["NCCL_HOME"] == f"{prefix}/cuda/nccl"
    assert seen["LD_LIBRARY_PATH"].split(":")[0] == f"{prefix}/lib"
    assert seen["FROM_STATE"] == "1"
    assert seen["GPUENV_TEST_UNSET_ME"] is None
    assert seen["VIRTUAL_ENV"] is None
    assert seen["JUPYTER_GPUENV_ENVIRONMENT_ID"] == env["id"]
    assert seen["JUPYTER_GPUENV_KERNEL_ID"] == kernel_id
    assert report["package"].startswith(seen["JUPYTER_GPUENV_KERNEL_SIDE"])
    assert report["magic"] is True

    # Interrupt and restart work as for any local kernel; the restart is a fresh process.
    msg_id = ws.send("import time\ntime.sleep(60)")
    await ws.wait_busy(msg_id)
    await jp_fetch("api", "kernels", kernel_id, "interrupt", method="POST", body="")
    assert (await ws.collect(msg_id, timeout=30)).error == "KeyboardInterrupt"
    await ws.run("kept = 1")
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
    ws.close()
    ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
    await ws.ready()
    assert (await ws.run("print('kept' in globals())")).text.strip() == "False"
    ws.close()
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_venv_kernel_is_activated(jp_fetch, jp_ws_fetch, prefixes):
    prefix = str(prefixes["venv"])
    env = await environment_named(jp_fetch, "plainvenv")
    kernel_id, ws, report = await kernel_report(jp_fetch, jp_ws_fetch, env["kernel_name"])
    assert report["prefix"] == report["env"]["VIRTUAL_ENV"] == prefix
    assert report["path0"] == f"{prefix}/bin"
    assert report["env"]["CONDA_PREFIX"] is None
    assert report["magic"] is True
    ws.close()
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_env_without_ipykernel_has_no_kernelspec(jp_fetch):
    env = await environment_named(jp_fetch, "nokernel")
    assert any("ipykernel is not installed" in p for p in env["problems"])
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert env["kernel_name"] not in specs
    assert (await environment_named(jp_fetch, "vision"))["kernel_name"] in specs


async def test_plain_jupyter_client_reads_the_server_config_files(tmp_path, prefixes, monkeypatch):
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps(server_config(conda_envs_dirs=[str(prefixes["conda"].parent)]))
    )
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    ksm = GpuEnvKernelSpecManager()
    (name,) = [n for n in ksm.find_kernel_specs() if n.startswith("gpuenv-conda-vision-")]
    km = AsyncKernelManager(kernel_name=name, kernel_spec_manager=ksm)
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(
            "import os, sys; assert sys.prefix == os.environ['CONDA_PREFIX']\n"
            "assert os.environ['CUDA_HOME'].endswith('/cuda')",
            timeout=60,
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        assert km.provisioner.pid and km.provisioner.environment_id in name
    finally:
        client.stop_channels()
        await km.shutdown_kernel(now=True)
    assert not await km.is_alive()
