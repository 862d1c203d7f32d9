"""Docker kernels through an in-process Jupyter server: failures that say why, GPUs,
the environment allowlist, mounts and limits, and the kernel-side package.

Every start failure must answer fast with a message a person can act on, and leave no
container behind.
"""

from __future__ import annotations

import json
import os

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.docker.nvidia_runtime import detect_runtime
from jupyter_gpuenv.environments.snapshot import environment_from_json
from jupyter_gpuenv.provisioning.kernelspecs import kernelspec_dict
from tests.provisioning.conftest import Collect, environment_named, kernel_containers
from tests.support.server_config import server_config

pytestmark = pytest.mark.docker

MISSING_IMAGE = "gpuenv-test/never-built:missing"


@pytest.fixture
def host_dirs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "numbers.txt").write_text("1 2 3")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    scratch.chmod(0o777)
    slow = tmp_path / "slow"
    slow.mkdir()
    # Imported by python at startup: a kernel that never gets ready.
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(600)\n")
    return {"data": data, "scratch": scratch, "slow": slow}


@pytest.fixture
def server_env(monkeypatch):
    """Secrets in the server's environment, and one variable the admin allows through."""
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-secret")
    monkeypatch.setenv("GPUENV_TEST_SECRET", "server-secret")
    monkeypatch.setenv("GPUENV_TEST_ALLOWED", "passed-through")


@pytest.fixture
def jp_server_config(request, python_kernel_image, host_dirs, server_env):
    image = python_kernel_image
    overrides = getattr(request, "param", {})
    return server_config(
        docker_images={
            "plain": image,
            "ghost": MISSING_IMAGE,
            "crashing": {"image": image, "environment": {"PYTHONHOME": "/nonexistent"}},
            "slow": {
                "image": image,
                "mounts": [f"{host_dirs['slow']}:/slowstart:ro"],
                "environment": {"PYTHONPATH": "/slowstart"},
            },
            "pinned": {"image": image, "gpus": ["0"]},
            "limited": {
                "image": image,
                "mounts": [
                    f"{host_dirs['data']}:/data:ro",
                    {"source": str(host_dirs["scratch"]), "target": "/scratch"},
                ],
                "environment": {"FROM_CONFIG": "yes"},
                "shm_size": "256m",
                "mem_limit": "512m",
                "cpus": 1.5,
            },
        },
        docker_environment_allowlist=["LANG", "GPUENV_TEST_ALLOWED"],
        **overrides,
    )


async def start_kernel(jp_fetch, kernel_name):
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": kernel_name})
    )
    return json.loads(response.body)["id"]


async def start_failure(jp_fetch, kernel_name) -> str:
    with pytest.raises(HTTPClientError) as info:
        await start_kernel(jp_fetch, kernel_name)
    assert info.value.code == 500
    return json.loads(info.value.response.body)["message"]


async def test_missing_image_is_named_with_how_to_get_it(jp_fetch, docker_client):
    env = await environment_named(jp_fetch, "ghost")
    message = await start_failure(jp_fetch, env["kernel_name"])
    assert f"Image {MISSING_IMAGE} is not present locally" in message
    assert f"docker pull {MISSING_IMAGE}" in message
    # The Lab starts kernels through the sessions API: the same message reaches it.
    body = {"path": "nb.ipynb", "type": "notebook", "kernel": {"name": env["kernel_name"]}}
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    assert f"docker pull {MISSING_IMAGE}" in json.loads(info.value.response.body)["message"]
    sessions = json.loads((await jp_fetch("api", "sessions")).body)
    assert sessions == []
    assert not kernel_containers(docker_client, **{labels.ENVIRONMENT_ID: env["id"]})


@pytest.fixture
def dead_docker_host(tmp_path, monkeypatch):
    address = f"unix://{tmp_path}/no-daemon-here.sock"
    monkeypatch.setenv("DOCKER_HOST", address)
    return address


async def test_unreachable_daemon_fails_fast_and_names_it(dead_docker_host, jp_fetch):
    env = await environment_named(jp_fetch, "plain")
    assert env["problems"], "the catalog says Docker is down"
    message = await start_failure(jp_fetch, env["kernel_name"])
    assert f"Docker daemon is not reachable at {dead_docker_host}" in message


async def test_exited_container_reports_its_last_log_lines(jp_fetch, docker_client):
    env = await environment_named(jp_fetch, "crashing")
    message = await start_failure(jp_fetch, env["kernel_name"])
    assert "exited with code 1 before the kernel was ready" in message
    assert "No module named 'encodings'" in message  # python's own last words
    assert not kernel_containers(docker_client, **{labels.ENVIRONMENT_ID: env["id"]})


@pytest.mark.parametrize("jp_server_config", [{"kernel_start_timeout": 3.0}], indirect=True)
async def test_start_timeout_is_reported_and_cleaned_up(jp_fetch, docker_client):
    env = await environment_named(jp_fetch, "slow")
    message = await start_failure(jp_fetch, env["kernel_name"])
    assert "was not ready within 3 s (c.GpuEnv.kernel_start_timeout)" in message
    assert not kernel_containers(docker_client, **{labels.ENVIRONMENT_ID: env["id"]})


async def test_explicit_gpu_ids_need_an_nvidia_runtime(jp_fetch, jp_data_dir, docker_client):
    env = await environment_named(jp_fetch, "pinned")
    if detect_runtime(docker_client).kind is None:
        assert any("kernels cannot start" in p for p in env["problems"])
        specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
        assert env["kernel_name"] not in specs  # not offered ...
        # ... and a kernelspec written to disk earlier is refused by the provisioner.
        folder = jp_data_dir / "kernels" / env["kernel_name"]
        folder.mkdir(parents=True)
        on_disk = kernelspec_dict(environment_from_json(env))
        (folder / "kernel.json").write_text(json.dumps(on_disk))
        message = await start_failure(jp_fetch, env["kernel_name"])
        assert (
            "GPUs 0 are configured for this environment but Docker cannot provide GPUs" in message
        )
        assert not kernel_containers(docker_client, **{labels.ENVIRONMENT_ID: env["id"]})
    else:
        kernel_id = await start_kernel(jp_fetch, env["kernel_name"])
        (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
        (device_request,) = container.attrs["HostConfig"]["DeviceRequests"]
        assert device_request["DeviceIDs"] == ["0"]
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_all_gpus_without_runtime_start_without_them(
    jp_fetch, jp_ws_fetch, jp_serverapp, docker_client
):
    from tests.provisioning.kernel_ws import KernelSocket

    collect = Collect()
    jp_serverapp.log.addHandler(collect)
    try:
        env = await environment_named(jp_fetch, "plain")
        kernel_id = await start_kernel(jp_fetch, env["kernel_name"])
        ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
        result = await ws.run(
            "import os; print(os.environ['NVIDIA_VISIBLE_DEVICES'], "
            "os.environ.get('NVIDIA_DRIVER_CAPABILITIES'))"
        )
        (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
        requests = container.attrs["HostConfig"].get("DeviceRequests") or []
        if detect_runtime(docker_client).kind is None:
            assert any("starting the kernel without GPUs" in line for line in collect.lines)
            assert any("kernels start without GPUs" in p for p in env["problems"])
            assert result.text.split() == ["void", "None"]
            assert requests == []
        else:
            assert result.text.split() == ["all", "compute,utility"]
            assert requests and requests[0]["Count"] == -1
        ws.close()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    finally:
        jp_serverapp.log.removeHandler(collect)


KERNEL_REPORT = """
import json, os
import jupyter_gpuenv_kernel
report = {
    "env": {k: v for k, v in os.environ.items()},
    "package": jupyter_gpuenv_kernel.__file__,
    "whole_package": getattr(__import__("importlib").util.find_spec("jupyter_gpuenv"),
                             "origin", None),
    "fallback": os.path.exists(os.environ["JUPYTER_GPUENV_KERNEL_SIDE"] + "/fallback/pynvml.py"),
    "magic": "gpuinfo" in get_ipython().magics_manager.magics["line"],
    "data": open("/data/numbers.txt").read(),
    "shm": os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize,
}
try:
    open("/data/new.txt", "w")
    report["data_writable"] = True
except OSError:
    report["data_writable"] = False
try:
    open(os.environ["JUPYTER_GPUENV_KERNEL_SIDE"] + "/run/connection.json", "a")
    report["connection_writable"] = True
except OSError:
    report["connection_writable"] = False
open("/scratch/from-kernel.txt", "w").write("ok")
print(json.dumps(report))
"""


async def test_settings_environment_and_kernel_side(
    jp_fetch, jp_ws_fetch, docker_client, host_dirs
):
    from tests.provisioning.kernel_ws import KernelSocket

    env = await environment_named(jp_fetch, "limited")
    kernel_id = await start_kernel(jp_fetch, env["kernel_name"])
    ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
    report = json.loads((await ws.run(KERNEL_REPORT)).text)
    seen = report["env"]
    assert seen["FROM_CONFIG"] == "yes"
    assert seen["GPUENV_TEST_ALLOWED"] == "passed-through"
    for secret in ("JUPYTERHUB_API_TOKEN", "GPUENV_TEST_SECRET"):
        assert secret not in seen
    assert seen["JUPYTER_GPUENV_ENVIRONMENT_ID"] == env["id"]
    assert seen["JUPYTER_GPUENV_KERNEL_ID"] == kernel_id
    assert seen["JUPYTER_GPUENV_KERNEL_SIDE"] == "/opt/jupyter-gpuenv"
    assert seen["PYTHONPATH"].split(":")[0] == "/opt/jupyter-gpuenv"
    assert report["package"].startswith("/opt/jupyter-gpuenv/jupyter_gpuenv_kernel/")
    # Only the kernel side is mounted, not the whole package.
    assert not (report["whole_package"] or "").startswith("/opt/jupyter-gpuenv")
    assert report["fallback"] and report["magic"]
    assert report["data"] == "1 2 3"
    assert report["data_writable"] is False
    assert report["connection_writable"] is False
    assert report["shm"] == 256 * 1024 * 1024
    assert (host_dirs["scratch"] / "from-kernel.txt").read_text() == "ok"

    result = await ws.run("%load_ext jupyter_gpuenv_kernel")
    assert result.status == "ok"

    (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    host_config = container.attrs["HostConfig"]
    assert host_config["Memory"] == 512 * 1024 * 1024
    assert host_config["NanoCpus"] == 1_500_000_000
    assert host_config["Init"] is True
    # Never more than the server: a root server's own kernel is uid 0 without capabilities.
    assert host_config["SecurityOpt"] == ["no-new-privileges"]
    if container.attrs["Config"]["User"] == "0:0":
        assert os.getuid() == 0 and host_config["CapDrop"] == ["ALL"]
    ws.close()
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})


async def test_provisioner_info_reattaches_to_the_container(jp_fetch, jp_serverapp, docker_client):
    from jupyter_gpuenv.provisioning.container.provisioner import DockerProvisioner

    env = await environment_named(jp_fetch, "plain")
    kernel_id = await start_kernel(jp_fetch, env["kernel_name"])
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    info = await km.provisioner.get_provisioner_info()
    assert info["runtime"]["kind"] == "engine"
    assert info["runtime"]["container_id"] == km.provisioner.container_id
    assert info["environment_id"] == env["id"]
    # The runtime's record survives JSON (a server persists it as such).
    info["runtime"] = json.loads(json.dumps(info["runtime"]))

    # Another provisioner (e.g. after a failover) finds the same running container.
    restored = DockerProvisioner(kernel_id=kernel_id, kernel_spec=km.kernel_spec, parent=km)
    await restored.load_provisioner_info(dict(info))
    assert restored.has_process and await restored.poll() is None
    await restored.kill()
    assert await restored.wait() is not None
    await restored.cleanup()
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    assert await km.provisioner.poll() is not None  # the original sees it gone too
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
