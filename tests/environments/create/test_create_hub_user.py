"""A Hub user's own server, running as that non-root account, creates environments only
under the account's home: a prefix in a folder the account may write (a world-writable
shared tree) is refused all the same, and so is removing an environment there."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.provisioning.server_process import ServerProcess, make_shared_dir, start_server
from tests.support.docker_engine import running_in_ci
from tests.support.system_user import SystemUser, UserUnavailable, system_user

JOBS = "/gpuenv/api/environments/jobs"


@pytest.fixture(scope="module")
def account() -> Iterator[SystemUser]:
    try:
        with system_user("gpuenvcr", system=False) as user:
            yield user
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the Hub user's create test: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def shared(demo_channel: Path) -> Iterator[Path]:
    """A folder everyone may read: the channel (copied) and a world-writable envs tree."""
    root = make_shared_dir("gpuenv-create-hub-", None, None)
    shutil.copytree(demo_channel, root / "channel")
    for path in (root / "channel", *(root / "channel").rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "shared-envs").mkdir(mode=0o1777)
    (root / "shared-envs").chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(account: SystemUser, shared: Path) -> Iterator[ServerProcess]:
    def prepare(home: Path) -> None:
        condarc = home / ".condarc"
        condarc.write_text(yaml.safe_dump({"channels": [(shared / "channel").as_uri()]}))
        os.chown(condarc, account.uid, account.gid)

    traits: dict[str, Any] = {
        "hub_user": account.name,
        "conda_envs_dirs": [str(shared / "shared-envs")],
        "venv_dirs": [],
        "docker_label_discovery": False,
        "docker_discover_pytorch_images": False,
        "environment_create_engine": "rattler",
    }
    process = start_server(shared, traits, account.uid, account.gid, prepare=prepare)
    yield process
    process.stop()


def environment_yml(shared: Path, name: str) -> str:
    channel = (shared / "channel").as_uri()
    data = {"name": name, "channels": [channel], "dependencies": ["gpuenv-tool"]}
    return yaml.safe_dump(data, sort_keys=False)


async def follow(server: ServerProcess, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        code, job = await server.request("GET", f"{JOBS}/{job_id}")
        assert code == 200, job
        if job["state"] != "running":
            return dict(job)
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} still running")


async def test_a_hub_user_creates_only_under_their_home(
    server: ServerProcess, shared: Path, account: SystemUser
) -> None:
    outside = shared / "shared-envs" / "mine"
    body = {"yaml": environment_yml(shared, "mine"), "prefix": str(outside)}
    code, reply = await server.request("POST", "/gpuenv/api/environments", body)
    assert code == 403, reply
    assert f"environments may only be created under {server.home}" in reply["message"]
    assert not outside.exists()
    # By name: the first envs folder under the home, though the configured one is writable.
    code, job = await server.request(
        "POST", "/gpuenv/api/environments", {"yaml": environment_yml(shared, "mine")}
    )
    assert code == 403 and "no writable folder" in job["message"], job
    code, job = await server.request(
        "POST",
        "/gpuenv/api/environments",
        {"yaml": environment_yml(shared, "mine"), "prefix": str(server.home / "envs" / "mine")},
    )
    assert code == 202, job
    done = await follow(server, job["id"])
    assert done["state"] == "done", done
    made = server.home / "envs" / "mine"
    assert (made / "conda-meta").is_dir()
    assert os.stat(made / "conda-meta").st_uid == account.uid  # made by the account itself

    # Removing: never outside the home, even an environment of the account's own.
    theirs = shared / "shared-envs" / "own-outside"
    (theirs / "conda-meta").mkdir(parents=True)
    for path in (theirs, theirs / "conda-meta"):
        os.chown(path, account.uid, account.gid)
    code, listing = await server.request("POST", "/gpuenv/api/environments/refresh", {})
    assert code == 200, listing
    listed = listing["environments"]
    (env_id,) = [e["id"] for e in listed if e["location"].get("prefix") == str(theirs)]
    code, reply = await server.request("DELETE", f"/gpuenv/api/environments/{env_id}")
    assert code == 403, reply
    assert f"environments may only be removed under {server.home}" in reply["message"]
    assert (theirs / "conda-meta").is_dir()
