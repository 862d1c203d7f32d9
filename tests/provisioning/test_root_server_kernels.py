"""A root server's container kernels: never more rights than the server, files like its own.

``jupyter lab --allow-root`` is common on GPU machines. Its kernels run as the notebook
folder's owner when that is not root, else as uid 0 with every capability dropped and
no new privileges; a connection file copy for another uid is readable by that uid only,
in a folder nobody else can list, and gone after a failed start or a ``kill -9`` of the
server (the next server sweeps it).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.environments.model import environment_id, kernel_name_for
from tests.provisioning.conftest import kernel_containers
from tests.provisioning.server_process import ServerProcess, make_shared_dir, start_server
from tests.support.docker_engine import running_in_ci
from tests.support.system_user import SystemUser, UserUnavailable, system_user
from tests.support.waits import eventually

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.getuid() != 0, reason="a root server needs a root test run"),
]

PLAIN_ID = environment_id("docker", "plain", "plain")
PLAIN = kernel_name_for(PLAIN_ID)


@pytest.fixture(scope="module")
def owner() -> Iterator[SystemUser]:
    try:
        with system_user() as user:
            yield user
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the root-server tests: {exc}")
        pytest.skip(str(exc))


def kernelspecs(home: Path) -> None:
    for name, config in {
        "k-zero-zero": {"user": "00"},
        "k-bad-mount": {"mounts": ["/nonexistent-gpuenv-mount:/x"]},
    }.items():
        folder = home / "data" / "kernels" / name
        folder.mkdir(parents=True)
        provisioner = {
            "provisioner_name": "gpuenv-docker-provisioner",
            "config": {"environment_id": PLAIN_ID, **config},
        }
        spec = {"argv": [], "display_name": name, "language": "python",
                "metadata": {"kernel_provisioner": provisioner}}  # fmt: skip
        (folder / "kernel.json").write_text(json.dumps(spec))


@pytest.fixture(scope="module")
def notebooks(owner: SystemUser) -> Iterator[Path]:
    root = make_shared_dir("gpuenv-rootsrv-", 0, 0)
    users = root / "alice"
    users.mkdir()
    os.chown(users, owner.uid, owner.gid)
    yield root


@pytest.fixture(scope="module")
def root_server(notebooks: Path, python_kernel_image: str) -> Iterator[ServerProcess]:
    server = start_server(
        notebooks, {"docker_images": {"plain": python_kernel_image}}, 0, 0, prepare=kernelspecs
    )
    yield server
    server.stop()


def private_files(server: ServerProcess, runtime: Path | None = None) -> list[Path]:
    runtime = runtime or server.home / "runtime"
    return sorted(p for p in runtime.glob("gpuenv-private-*/*") if p.is_file())


async def test_its_own_kernel_is_uid_0_without_capabilities(
    root_server: ServerProcess, notebooks: Path, docker_client: Any
) -> None:
    body = {"name": PLAIN, "path": ""}
    code, kernel = await root_server.request("POST", "/api/kernels", body)
    assert code == 201, kernel
    try:
        (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel["id"]})
        host = container.attrs["HostConfig"]
        assert container.attrs["Config"]["User"] == "0:0"
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
        socket = await root_server.channels(kernel["id"])
        try:
            result = await socket.run(
                "import os\nopen('written-by-kernel.txt', 'w').write('x')\n"
                "try:\n    os.chown('written-by-kernel.txt', 1234, 1234)\n"
                "except PermissionError:\n    print('no CAP_CHOWN')\n"
            )
        finally:
            socket.close()
        assert result.error is None, result
        assert "no CAP_CHOWN" in result.text
        written = notebooks / "written-by-kernel.txt"
        assert written.stat().st_uid == 0
        written.unlink()
    finally:
        await root_server.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_a_root_uid_from_a_kernelspec_is_refused(root_server: ServerProcess) -> None:
    code, reply = await root_server.request("POST", "/api/kernels", {"name": "k-zero-zero"})
    assert code == 403, reply
    assert "uid 0" in reply["message"]


async def test_failed_start_leaves_no_connection_copy(root_server: ServerProcess) -> None:
    body = {"name": "k-bad-mount", "path": "alice"}
    code, reply = await root_server.request("POST", "/api/kernels", body)
    assert code == 500 and "does not exist" in reply["message"], reply
    assert private_files(root_server) == []


async def test_kernel_in_a_users_folder_runs_as_the_owner_and_its_key_stays_private(
    notebooks: Path, python_kernel_image: str, owner: SystemUser, docker_client: Any
) -> None:
    settings = {"docker_images": {"plain": python_kernel_image}}
    first = start_server(notebooks, settings, 0, 0)
    try:
        code, kernel = await first.request("POST", "/api/kernels", {"name": PLAIN, "path": "alice"})
        assert code == 201, kernel
        (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel["id"]})
        assert container.attrs["Config"]["User"] == f"{owner.uid}:{owner.gid}"
        (copy,) = private_files(first)
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
        assert copy.parent.stat().st_uid == 0
        assert stat.S_IMODE(copy.stat().st_mode) == 0o400 and copy.stat().st_uid == owner.uid

        runtime = first.home / "runtime"
        first.kill9()
        assert private_files(first, runtime), "kill -9 gives the server no chance to clean up"
        second = start_server(
            notebooks, settings, 0, 0, extra_env={"JUPYTER_RUNTIME_DIR": str(runtime)}
        )
        try:
            await second.request("GET", "/api/kernelspecs")
            await eventually(
                lambda: not private_files(first, runtime),
                60,
                "the next server to remove the dead server's connection files",
            )
            await eventually(
                lambda: not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel["id"]}),
                60,
                "the next server to remove the orphaned container",
            )
        finally:
            second.stop()
    finally:
        first.stop()
