"""Kernel containers never outlive their server for good.

* ``kill -9`` of a real server leaves its container; the next server start removes it.
* The sweep's rule, on real containers: owners alive on this host (same PID *and* start
  time) or on another host are kept; dead owners and reused PIDs are removed.
* A plain jupyter_client process that exits without shutting its kernel down removes
  the container at exit, and reads c.GpuEnv from the config files like the server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.provisioning.container.orphans import (
    private_connection_dir,
    process_start_time,
    remove_orphans,
    remove_own_containers,
    remove_stale_connection_files,
    this_instance,
)
from tests.provisioning.conftest import kernel_containers
from tests.provisioning.server_process import REPO, make_shared_dir
from tests.support.waits import eventually

pytestmark = pytest.mark.docker


@pytest.fixture
def root_dir():
    path = make_shared_dir("gpuenv-orphans-", None, None)
    yield path
    path.rmdir()


async def test_kill_9_of_the_server_then_restart_leaves_no_orphan(
    docker_client, python_kernel_image, root_dir, server_processes
):
    settings = {"docker_images": {"plain": python_kernel_image}}
    first = server_processes(root_dir, settings)
    code, listing = await first.request("GET", "/gpuenv/api/environments")
    (env,) = listing["environments"]
    code, kernel = await first.request("POST", "/api/kernels", {"name": env["kernel_name"]})
    assert code == 201, kernel
    kernel_id = kernel["id"]
    (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})

    first.kill9()
    container.reload()
    assert container.status == "running", "kill -9 gives the server no chance to clean up"

    server_processes(root_dir, settings)
    await eventually(
        lambda: not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id}),
        60,
        "the next server to remove the orphaned container",
    )


def labelled_container(client, image: str, owner: dict[str, str], name: str):
    return client.containers.create(
        image,
        entrypoint=["true"],
        name=name,
        labels={labels.ROLE: "kernel", labels.KERNEL_ID: name, **owner},
    )


def finished_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_sweep_keeps_live_owners_and_removes_dead_ones(docker_client, python_kernel_image):
    host = socket.gethostname()
    me = str(os.getpid())
    started = process_start_time(os.getpid()) or ""
    tag = os.urandom(3).hex()
    owners = {
        "alive": {
            labels.SERVER_ID: "other-alive",
            labels.SERVER_PID: me,
            labels.SERVER_HOST: host,
            labels.SERVER_STARTED: started,
        },
        "elsewhere": {
            labels.SERVER_ID: "other-host",
            labels.SERVER_PID: "1",
            labels.SERVER_HOST: f"not-{host}",
            labels.SERVER_STARTED: "1",
        },
        "dead": {
            labels.SERVER_ID: "dead",
            labels.SERVER_PID: str(finished_pid()),
            labels.SERVER_HOST: host,
            labels.SERVER_STARTED: "1",
        },
        "reused-pid": {
            labels.SERVER_ID: "reused",
            labels.SERVER_PID: me,
            labels.SERVER_HOST: host,
            labels.SERVER_STARTED: "1",
        },
    }
    created = {
        kind: labelled_container(
            docker_client, python_kernel_image, owner, f"gpuenv-orphan-test-{kind}-{tag}"
        )
        for kind, owner in owners.items()
    }
    try:
        removed = remove_orphans(docker_client)
        present = {c.name for c in docker_client.containers.list(all=True)}
        # Another server starting meanwhile may sweep first: judge by what is left.
        assert created["dead"].name not in present
        assert created["reused-pid"].name not in present
        assert created["alive"].name in present and created["alive"].name not in removed
        assert created["elsewhere"].name in present
    finally:
        for container in created.values():
            try:
                container.remove(force=True)
            except Exception:
                pass


def test_own_containers_are_removed_and_no_others(docker_client, python_kernel_image):
    tag = os.urandom(3).hex()
    mine = labelled_container(
        docker_client, python_kernel_image, this_instance().labels(), f"gpuenv-own-{tag}"
    )
    # Alive (this very process) but another instance: not ours to remove.
    other_owner = {**this_instance().labels(), labels.SERVER_ID: f"other-{tag}"}
    other = labelled_container(docker_client, python_kernel_image, other_owner, f"gpuenv-oth-{tag}")
    try:
        assert remove_own_containers() == [mine.name]
        present = {c.name for c in docker_client.containers.list(all=True)}
        assert mine.name not in present and other.name in present
    finally:
        for container in (mine, other):
            try:
                container.remove(force=True)
            except Exception:
                pass


PLAIN_CLIENT = textwrap.dedent(
    """
    import json, sys
    from jupyter_client.manager import KernelManager
    from jupyter_gpuenv.provisioning.kernelspecs import GpuEnvKernelSpecManager

    ksm = GpuEnvKernelSpecManager()
    (name,) = [n for n in ksm.find_kernel_specs() if n.startswith("gpuenv-docker-")]
    km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    km.start_kernel()
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    reply = client.execute_interactive("import os; x = os.environ['JUPYTER_GPUENV_KERNEL_ID']",
                                       timeout=60)
    print(json.dumps({"kernel_id": km.kernel_id, "status": reply["content"]["status"],
                      "container": km.provisioner.container_id}))
    sys.stdout.flush()
    # Exit without shutting the kernel down.
    """
)


def test_plain_jupyter_client_reads_config_files_and_cleans_up_at_exit(
    docker_client, python_kernel_image, tmp_path
):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "GpuEnv": {
                    "docker_images": {"plain": python_kernel_image},
                    "conda_envs_dirs": [],
                    "venv_dirs": [],
                    "docker_label_discovery": False,
                    "docker_discover_pytorch_images": False,
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        PYTHONPATH=str(REPO),
    )
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_CLIENT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == "ok" and report["container"]
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: report["kernel_id"]})


def test_sweep_removes_connection_files_of_servers_that_are_gone(tmp_path) -> None:
    """Copies of connection files hold the kernel's key: a dead server's go with it."""
    mine = private_connection_dir(str(tmp_path))
    (tmp_path / os.path.basename(mine) / "gpuenv-connection-live.json").write_text("{}")
    dead = tmp_path / f"gpuenv-private-{finished_pid()}-1"
    dead.mkdir()
    (dead / "gpuenv-connection-dead.json").write_text("{}")
    reused = tmp_path / f"gpuenv-private-{os.getppid()}-1"  # a live PID, another start time
    reused.mkdir()
    loose = tmp_path / "gpuenv-connection-old.json"
    loose.write_text("{}")
    jupyter_own = tmp_path / "kernel-abc.json"
    jupyter_own.write_text("{}")

    removed = remove_stale_connection_files(str(tmp_path))
    assert sorted(removed) == sorted(str(p) for p in (dead, reused, loose))
    assert os.stat(mine).st_mode & 0o777 == 0o700
    assert os.listdir(mine) == ["gpuenv-connection-live.json"]
    assert jupyter_own.exists()
