"""Warm Docker kernels: started as the server's user, handed out in the notebook's folder.

A real ``jupyter server`` running as an ordinary uid (as users run it) with
``c.GpuEnv.warm_kernels`` for one image; the containers are real. After a server stop
and after a ``kill -9`` (then the next server's sweep) no warm container is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.environments.model import environment_id, kernel_name_for
from tests.provisioning.server_process import ServerProcess, make_shared_dir, start_server
from tests.provisioning.warm_support import first_cell, pool_status, start_session, until_pool
from tests.support.docker_engine import running_in_ci
from tests.support.system_user import SystemUser, UserUnavailable, system_user
from tests.support.waits import eventually

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.getuid() != 0, reason="a server as another user needs a root run"),
]

WARM_ID = environment_id("docker", "warmpy", "warmpy")
WARM_KERNEL = kernel_name_for(WARM_ID)
HOSTILE = "k-warmpy-more-rights"


@pytest.fixture(scope="module")
def owner() -> Iterator[SystemUser]:
    try:
        with system_user() as user:
            yield user
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the warm Docker kernel tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def notebooks(owner: SystemUser) -> Path:
    root = make_shared_dir("gpuenv-warmdock-", owner.uid, owner.gid)
    for folder in ("a", "b"):
        (root / folder).mkdir()
        os.chown(root / folder, owner.uid, owner.gid)
    return root


def hostile_kernelspec(home: Path) -> None:
    """A user's own kernelspec naming the warm environment with a request of its own."""
    folder = home / "data" / "kernels" / HOSTILE
    folder.mkdir(parents=True)
    provisioner = {"provisioner_name": "gpuenv-docker-provisioner",
                   "config": {"environment_id": WARM_ID, "mounts": ["/etc:/host-etc"]}}  # fmt: skip
    spec = {"argv": [], "display_name": HOSTILE, "language": "python",
            "metadata": {"kernel_provisioner": provisioner}}  # fmt: skip
    (folder / "kernel.json").write_text(json.dumps(spec))
    os.chown(folder / "kernel.json", int(home.stat().st_uid), int(home.stat().st_gid))


def start(notebooks: Path, image: str, owner: SystemUser) -> ServerProcess:
    settings = {
        "docker_images": {"warmpy": image},
        "warm_kernels": {"warmpy": {"count": 1}},
    }
    return start_server(notebooks, settings, owner.uid, owner.gid, prepare=hostile_kernelspec)


def warm_containers(client: Any, notebooks: Path) -> list[Any]:
    """Kernel containers that mount this test's notebook root (the warm ones do)."""
    found = client.containers.list(all=True, filters={"label": f"{labels.ROLE}=kernel"})
    return [
        c
        for c in found
        if any(str(notebooks) in (m.get("Source") or "") for m in c.attrs.get("Mounts", []))
    ]


async def test_warm_container_kernel_runs_as_the_user_in_the_notebooks_folder(
    notebooks: Path, python_kernel_image: str, owner: SystemUser, docker_client: Any
) -> None:
    server = start(notebooks, python_kernel_image, owner)
    try:
        await until_pool(server, "warmpy", 1, timeout=300)
        (container,) = warm_containers(docker_client, notebooks)
        assert container.labels[labels.ROLE] == "kernel"
        assert container.labels[labels.SERVER_HOST]  # the orphan sweep's owner labels
        kernel_id = await start_session(server, "a/nb.ipynb", WARM_KERNEL)
        assert container.labels[labels.KERNEL_ID] == kernel_id  # adopted, not renamed
        seen = await first_cell(server, kernel_id)
        assert seen["cwd"] == str(notebooks / "a")
        assert seen["uid"] == owner.uid
        assert seen["session"] == str(notebooks / "a" / "nb.ipynb")
        assert seen["count"] == 2 and seen["history"] == [[1, seen["inputs"][1]]], seen

        await until_pool(server, "warmpy", 1, timeout=300)
        body = {"name": WARM_KERNEL, "path": "b"}
        code, other = await server.request("POST", "/api/kernels", body)
        assert code == 201, other
        assert other["id"] != kernel_id
        assert (await first_cell(server, other["id"]))["cwd"] == str(notebooks / "b")

        # A kernelspec of the user's naming the same environment with more rights never
        # gets a warm kernel (whatever the policy answers it).
        await until_pool(server, "warmpy", 1, timeout=300)
        await server.request("POST", "/api/kernels", {"name": HOSTILE, "path": "a"})
        (pool,) = await pool_status(server)
        assert pool["handed_out"] == 2 and pool["ready"] == 1, pool
    finally:
        server.stop()
    assert warm_containers(docker_client, notebooks) == []


async def test_kill_9_leaves_warm_containers_to_the_next_servers_sweep(
    notebooks: Path, python_kernel_image: str, owner: SystemUser, docker_client: Any
) -> None:
    server = start(notebooks, python_kernel_image, owner)
    try:
        await until_pool(server, "warmpy", 1, timeout=300)
        assert len(warm_containers(docker_client, notebooks)) == 1
    finally:
        server.kill9()
        server.stop()
    successor = start_server(notebooks, {"docker_images": {}}, owner.uid, owner.gid)
    try:
        await eventually(
            lambda: warm_containers(docker_client, notebooks) == [],
            60,
            "the sweep to remove the warm container",
        )
    finally:
        successor.stop()


async def test_a_changed_image_drains_the_pool(
    notebooks: Path,
    python_kernel_image: str,
    old_ipykernel_image: str,
    owner: SystemUser,
    docker_client: Any,
) -> None:
    """The entry's tag moves to another image: warm kernels of the old one are replaced."""
    repository, tag = "gpuenv-test/warm-swap", uuid.uuid4().hex[:12]
    docker_client.images.get(python_kernel_image).tag(repository, tag)
    moving = f"{repository}:{tag}"
    server = start(notebooks, moving, owner)
    version = "import ipykernel; print(ipykernel.__version__)"
    try:
        await until_pool(server, "warmpy", 1, timeout=300)
        first = await run_in_new_kernel(server, version)
        docker_client.images.get(old_ipykernel_image).tag(repository, tag)
        code, _ = await server.request("POST", "/gpuenv/api/environments/refresh")
        assert code == 200
        deadline = time.monotonic() + 300
        pool: dict[str, Any] = {}
        while time.monotonic() < deadline:
            (pool,) = await pool_status(server)
            if pool["replaced"] >= 1 and pool["ready"] == 1:
                break
            await asyncio.sleep(0.3)
        assert pool["replaced"] >= 1 and pool["ready"] == 1, pool
        second = await run_in_new_kernel(server, version)
        assert second.startswith("6.") and not first.startswith("6."), (first, second)
        (pool,) = await pool_status(server)
        assert pool["handed_out"] == 2, pool  # both were warm kernels
    finally:
        server.stop()
        docker_client.images.remove(moving, noprune=True)
    assert warm_containers(docker_client, notebooks) == []


async def run_in_new_kernel(server: ServerProcess, code: str) -> str:
    """What ``code`` prints in a kernel handed out for folder a (then shut down)."""
    status, kernel = await server.request(
        "POST", "/api/kernels", {"name": WARM_KERNEL, "path": "a"}
    )
    assert status == 201, kernel
    socket = await server.channels(kernel["id"])
    try:
        return (await socket.run(code)).text.strip()
    finally:
        socket.close()
        await server.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_interrupt_and_restart_of_a_warm_container_kernel(
    notebooks: Path, python_kernel_image: str, owner: SystemUser, docker_client: Any
) -> None:
    server = start(notebooks, python_kernel_image, owner)
    try:
        await until_pool(server, "warmpy", 1, timeout=300)
        kernel_id = await start_session(server, "a/nb.ipynb", WARM_KERNEL)
        socket = await server.channels(kernel_id)
        try:
            msg_id = socket.send("import time; time.sleep(120)")
            await socket.wait_busy(msg_id)
            code, _ = await server.request("POST", f"/api/kernels/{kernel_id}/interrupt")
            assert code == 204
            assert (await socket.collect(msg_id)).error == "KeyboardInterrupt"
        finally:
            socket.close()
        code, _ = await server.request("POST", f"/api/kernels/{kernel_id}/restart")
        assert code == 200
        after = await first_cell(server, kernel_id)
        assert after["cwd"] == str(notebooks / "a") and after["uid"] == owner.uid
        assert after["count"] == 2 and after["history"] == [[1, after["inputs"][1]]]
        code, _ = await server.request("DELETE", f"/api/kernels/{kernel_id}")
        assert code == 204
    finally:
        server.stop()
    assert warm_containers(docker_client, notebooks) == []
