"""A Docker kernel through a real ``jupyter server`` running as an ordinary user.

This is the whole user story: the launcher's kernelspec starts a container of the real
CPU PyTorch image, the notebook imports torch inside it, writes a file next to the
notebook (owned by the server's user, the container not running as root), is
interrupted out of ``time.sleep(60)``, restarts into a fresh container and leaves none
behind when shut down.
"""

from __future__ import annotations

import os

import pytest

from jupyter_gpuenv.docker import labels
from tests.provisioning.conftest import kernel_containers
from tests.provisioning.server_process import make_shared_dir
from tests.support.waits import eventually

pytestmark = pytest.mark.docker

SERVER_UID = SERVER_GID = 4242


@pytest.fixture
def notebook_dir():
    path = make_shared_dir("gpuenv-notebooks-", SERVER_UID, SERVER_GID)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


async def test_torch_kernel_in_a_container(
    docker_client, torch_cpu_image, notebook_dir, server_processes
):
    server = server_processes(
        notebook_dir,
        {
            "docker_images": {"torch": torch_cpu_image},
            "docker_label_discovery": False,
            "docker_discover_pytorch_images": False,
            "conda_envs_dirs": [],
            "venv_dirs": [],
        },
        uid=SERVER_UID,
        gid=SERVER_GID,
    )
    code, listing = await server.request("GET", "/gpuenv/api/environments")
    assert code == 200
    (env,) = listing["environments"]
    assert env["torch_version"] == "2.13.0+cpu"

    code, specs = await server.request("GET", "/api/kernelspecs")
    spec = specs["kernelspecs"][env["kernel_name"]]["spec"]
    assert spec["display_name"] == env["display_name"]
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": "gpuenv-docker-provisioner",
        "config": {"environment_id": env["id"]},
    }

    code, session = await server.request(
        "POST",
        "/api/sessions",
        {"path": "analysis.ipynb", "type": "notebook", "kernel": {"name": env["kernel_name"]}},
    )
    assert code == 201, session
    kernel_id = session["kernel"]["id"]
    (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    assert container.labels[labels.ENVIRONMENT_ID] == env["id"]
    assert container.labels[labels.SERVER_PID] == str(server.proc.pid)
    assert container.name.startswith(f"gpuenv-{env['id']}-{kernel_id[:8]}")
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    assert container.attrs["Config"]["User"] == f"{SERVER_UID}:{SERVER_GID}"

    ws = await server.channels(kernel_id)
    await ws.ready()
    result = await ws.run(
        "import os, torch\n"
        "print(torch.__version__, os.getuid(), os.getgid(), os.getcwd())\n"
        "print(os.path.exists('/.dockerenv'), os.environ['JUPYTER_GPUENV_KERNEL_ID'])\n"
        "open('written-by-kernel.txt', 'w').write(str(torch.ones(3).sum().item()))\n"
    )
    version, uid, gid, cwd, in_docker, seen_kernel_id = result.text.split()
    assert version == "2.13.0+cpu"
    assert (int(uid), int(gid)) == (SERVER_UID, SERVER_GID)
    assert cwd == str(notebook_dir)
    assert in_docker == "True" and seen_kernel_id == kernel_id
    written = notebook_dir / "written-by-kernel.txt"
    assert written.read_text() == "3.0"
    assert (written.stat().st_uid, written.stat().st_gid) == (SERVER_UID, SERVER_GID)
    assert written.stat().st_uid != 0

    # Interrupt: the sleeping cell ends with KeyboardInterrupt long before its 60 s.
    msg_id = ws.send("import time\ntime.sleep(60)")
    await ws.wait_busy(msg_id)
    code, _ = await server.request("POST", f"/api/kernels/{kernel_id}/interrupt")
    assert code == 204
    interrupted = await ws.collect(msg_id, timeout=30)
    assert interrupted.error == "KeyboardInterrupt"
    assert (await ws.run("print('alive after interrupt')")).text.strip() == "alive after interrupt"

    # Restart: a new container, and none of the old variables.
    await ws.run("state_before_restart = 42")
    old_id = container.id
    code, _ = await server.request("POST", f"/api/kernels/{kernel_id}/restart")
    assert code == 200
    ws.close()
    ws = await server.channels(kernel_id)
    await ws.ready()
    result = await ws.run("print('state_before_restart' in globals())")
    assert result.text.strip() == "False"
    (restarted,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    assert restarted.id != old_id
    assert not [c for c in docker_client.containers.list(all=True) if c.id == old_id]
    ws.close()

    # Shutdown: no container left for this kernel.
    code, _ = await server.request("DELETE", f"/api/sessions/{session['id']}")
    assert code == 204
    await eventually(
        lambda: not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id}),
        30,
        "the kernel container to be removed",
    )
    assert "ready in" in server.log_text()
    assert os.path.exists(written)
