"""Container kernels get CurveZMQ-encrypted channels when the image's ipykernel reads the
keys (>= 7.4), with no configuration; an image with an older ipykernel starts as before.

Real ``jupyter server`` processes start real kernel containers. The connection file stays
mounted read-only; the kernel runs from a private writable copy in a tmpfs of its own uid
(ipykernel rewrites the file), so the secret key is in no variable, label, command or
log, and nothing of it is left once the kernel is gone. A root server's kernel in a
user's folder runs as that user from a 0400 copy: the same holds there.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.provisioning.container.request import WRITABLE_CONNECTION_FILE
from tests.provisioning.conftest import kernel_containers
from tests.provisioning.server_process import ServerProcess, make_shared_dir
from tests.support.docker_engine import running_in_ci
from tests.support.system_user import SystemUser, UserUnavailable, system_user
from tests.support.waits import eventually

pytestmark = pytest.mark.docker

PLAIN_TEXT_WARNING = "Kernel is running over TCP without encryption"
# What the kernel process itself says about its channels and the file it read.
KERNEL_SIDE_VIEW = (
    "from ipykernel.kernelapp import IPKernelApp\n"
    "app = IPKernelApp.instance()\n"
    "print(getattr(app, 'curve_secretkey', None) is not None, app.connection_file)\n"
)


def only_images(images: dict[str, str]) -> dict[str, Any]:
    return {
        "docker_images": images,
        "conda_envs_dirs": [],
        "venv_dirs": [],
        "docker_label_discovery": False,
        "docker_discover_pytorch_images": False,
    }


# The test's own uid (root: the kernel is uid 0 without capabilities) and an ordinary
# server uid (the kernel runs as it and reads the original connection file).
SERVER_UIDS = sorted({os.getuid(), 4243})


@pytest.fixture(params=SERVER_UIDS, ids=lambda uid: f"server-uid-{uid}")
def curve_server(
    request: pytest.FixtureRequest,
    server_processes: Any,
    python_kernel_image: str,
    old_ipykernel_image: str,
    pytorch_official_image: str,
) -> Iterator[tuple[ServerProcess, Path]]:
    uid = request.param
    if uid != os.getuid() and os.getuid() != 0:
        pytest.skip("only root can start a server as another uid")
    notebooks = make_shared_dir("gpuenv-curve-", uid, uid)
    images = {
        "curvy": python_kernel_image,
        "oldkernel": old_ipykernel_image,
        "official": pytorch_official_image,  # no ipykernel: the kernel layer's is >= 7.4
    }
    try:
        yield server_processes(notebooks, only_images(images), uid=uid, gid=uid), notebooks
    finally:
        shutil.rmtree(notebooks, ignore_errors=True)


async def environment(server: ServerProcess, name: str) -> dict[str, Any]:
    status, listing = await server.request("GET", "/gpuenv/api/environments")
    assert status == 200, listing
    (env,) = [e for e in listing["environments"] if e["name"] == name]
    return env


def connection_info(server: ServerProcess, kernel_id: str) -> dict[str, Any]:
    path = server.home / "runtime" / f"kernel-{kernel_id}.json"
    return dict(json.loads(path.read_text()))


async def run_in(server: ServerProcess, kernel_id: str, code: str) -> str:
    ws = await server.channels(kernel_id)
    try:
        result = await ws.run(code)
    finally:
        ws.close()
    assert result.error is None, result
    return result.text


def secret_nowhere_in_the_container(container: Any, secret: str) -> None:
    config = container.attrs["Config"]
    exposed = json.dumps(
        [config.get("Env"), config.get("Cmd"), config.get("Entrypoint"), config.get("Labels")]
    )
    assert secret not in exposed
    assert secret not in container.logs().decode(errors="replace")


@pytest.mark.parametrize("name", ["curvy", "official"])
async def test_container_kernel_negotiates_curve(
    curve_server: Any, docker_client: Any, name: str
) -> None:
    server, _ = curve_server
    env = await environment(server, name)
    assert env["ipykernel_version"] == ("7.4.0" if name == "curvy" else None), env
    status, kernel = await server.request("POST", "/api/kernels", {"name": env["kernel_name"]})
    assert status == 201, kernel
    kernel_id = kernel["id"]
    try:
        info = connection_info(server, kernel_id)
        assert info.get("curve_publickey") and info.get("curve_secretkey"), sorted(info)
        assert await run_in(server, kernel_id, "print(6 * 7)") == "42\n"
        view = await run_in(server, kernel_id, KERNEL_SIDE_VIEW)
        assert view == f"True {WRITABLE_CONNECTION_FILE}\n"
        status, described = await server.request("GET", f"/gpuenv/api/kernels/{kernel_id}")
        assert status == 200 and described["start_warning"] is None, described
        (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
        assert container.attrs["Config"]["User"] == f"{server.uid}:{server.gid}"
        assert PLAIN_TEXT_WARNING not in container.logs().decode(errors="replace")
        secret_nowhere_in_the_container(container, info["curve_secretkey"])
        assert info["curve_secretkey"] not in server.log_text()
    finally:
        await server.request("DELETE", f"/api/kernels/{kernel_id}")
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    assert PLAIN_TEXT_WARNING not in server.log_text()


async def test_an_old_ipykernel_runs_without_curve(curve_server: Any) -> None:
    server, _ = curve_server
    env = await environment(server, "oldkernel")
    assert env["ipykernel_version"].startswith("6."), env
    status, kernel = await server.request("POST", "/api/kernels", {"name": env["kernel_name"]})
    assert status == 201, kernel
    try:
        info = connection_info(server, kernel["id"])
        assert not {k for k in info if k.startswith("curve_")}, sorted(info)
        assert await run_in(server, kernel["id"], "print(6 * 7)") == "42\n"
        view = await run_in(server, kernel["id"], KERNEL_SIDE_VIEW)
        assert view.startswith("False ") and WRITABLE_CONNECTION_FILE not in view
    finally:
        await server.request("DELETE", f"/api/kernels/{kernel['id']}")


@pytest.fixture
def owner() -> Iterator[SystemUser]:
    try:
        with system_user("gpuenvcrv") as user:
            yield user
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the root-server tests: {exc}")
        pytest.skip(str(exc))


@pytest.mark.skipif(os.getuid() != 0, reason="a root server needs a root test run")
async def test_a_users_kernel_under_a_root_server_uses_curve_from_its_private_copy(
    request: pytest.FixtureRequest,
    server_processes: Any,
    python_kernel_image: str,
    owner: SystemUser,
    docker_client: Any,
) -> None:
    notebooks = make_shared_dir("gpuenv-curve-root-", 0, 0)
    (notebooks / "alice").mkdir()
    os.chown(notebooks / "alice", owner.uid, owner.gid)
    request.addfinalizer(lambda: shutil.rmtree(notebooks, ignore_errors=True))
    server = server_processes(notebooks, only_images({"curvy": python_kernel_image}), 0, 0)
    env = await environment(server, "curvy")
    body = {"name": env["kernel_name"], "path": "alice"}
    status, kernel = await server.request("POST", "/api/kernels", body)
    assert status == 201, kernel
    kernel_id = kernel["id"]
    private = sorted((server.home / "runtime").glob("gpuenv-private-*/*"))
    try:
        (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
        assert container.attrs["Config"]["User"] == f"{owner.uid}:{owner.gid}"
        assert len(private) == 1 and private[0].stat().st_uid == owner.uid
        info = connection_info(server, kernel_id)
        view = await run_in(server, kernel_id, KERNEL_SIDE_VIEW + "import os\nprint(os.getuid())")
        assert view == f"True {WRITABLE_CONNECTION_FILE}\n{owner.uid}\n"
        secret_nowhere_in_the_container(container, info["curve_secretkey"])
        assert PLAIN_TEXT_WARNING not in container.logs().decode(errors="replace")
    finally:
        await server.request("DELETE", f"/api/kernels/{kernel_id}")
    await eventually(lambda: not private[0].exists(), 30, "the connection copy to be removed")
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
