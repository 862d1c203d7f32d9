"""The broker mounts folders as its caller's account sees them, not as root does.

Two real accounts, Alice (the attacker) and Bob, and a real Docker engine behind a
proxy that can hold a container's start. A folder behind one Alice cannot enter is
refused even under a notebook root; an admin mount template on a tree she can write is
refused; a notebook folder she swaps for a link between the broker's check and
Docker's mount is caught before the kernel is handed out. An honest start in her own
folder and in a shared one she may enter runs as her.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from jupyter_gpuenv.broker.kernels import KernelBroker
from jupyter_gpuenv.broker.rules import HubUser
from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.errors import PolicyViolation
from jupyter_gpuenv.provisioning.container import orphans
from jupyter_gpuenv.services import Services
from tests.provisioning.server_process import make_shared_dir
from tests.support.docker_engine import running_in_ci
from tests.support.docker_proxy import DockerProxy
from tests.support.kernel_calls import run_code
from tests.support.system_user import SystemUser, UserUnavailable, system_user
from tests.support.waits import eventually

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

BOBS_WORDS = "only for bob\n"
SCRATCH_GROUP = "scratchers"


@dataclass
class Place:
    """The accounts and their folders: homes, a shared notebook root, a scratch tree."""

    alice: SystemUser
    bob: SystemUser
    root: Path

    def home(self, account: SystemUser) -> Path:
        return self.root / "home" / account.name

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def bobs_public(self) -> Path:
        """Open to all (0755) but inside Bob's 0700 folder: Alice cannot reach it."""
        return self.shared / self.bob.name / "public"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    def hub_user(self, account: SystemUser, *groups: str) -> HubUser:
        return HubUser(account.name, groups, account.uid, account.gid, str(self.home(account)))

    def as_alice(self, script: str) -> None:
        """``sh -c script`` as Alice, with only her own groups, in her home."""
        done = subprocess.run(
            ["runuser", "-u", self.alice.name, "--", "sh", "-c", script],
            cwd=self.home(self.alice),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def _folder(path: Path, owner: SystemUser | None, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    path.chmod(mode)


@pytest.fixture(scope="module")
def place() -> Iterator[Place]:
    try:
        with (
            system_user("gpuenvfa", system=False) as alice,
            system_user("gpuenvfb", system=False) as bob,
        ):
            root = make_shared_dir("gpuenv-broker-folders-", None, None)
            try:
                here = Place(alice, bob, root)
                for account in (alice, bob):
                    _folder(here.home(account), account, 0o700)
                _folder(here.home(alice) / "project", alice, 0o755)
                _folder(here.shared, None, 0o755)
                _folder(here.shared / "common", None, 0o755)
                _folder(here.shared / bob.name, bob, 0o700)
                _folder(here.bobs_public, bob, 0o755)
                secret = here.bobs_public / "words.txt"
                secret.write_text(BOBS_WORDS)
                os.chown(secret, bob.uid, bob.gid)
                _folder(here.scratch, None, 0o1777)
                yield here
            finally:
                shutil.rmtree(root, ignore_errors=True)
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the broker's folder tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def proxy(place: Place) -> Iterator[DockerProxy]:
    proxy = DockerProxy(place.root / "docker.sock")
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
async def broker(
    place: Place, proxy: DockerProxy, python_kernel_image: str
) -> AsyncIterator[KernelBroker]:
    orphans.use_instance_id(f"gpuenv-broker-folders-{secrets.token_hex(4)}")
    config = GpuEnv()
    config.docker_host = proxy.address
    config.docker_images = {"py": {"image": python_kernel_image, "gpus": "none"}}
    config.restrict_to_configured_images = True
    config.kernel_start_timeout = 120
    services = Services.build(config, cache_path=None)
    rules = {
        "default": {
            "environments": ["py"],
            "max_kernels": 3,
            "notebook_roots": ["{home}", str(place.shared)],
        },
        "groups": {SCRATCH_GROUP: {"mounts": [f"{place.scratch}/{{username}}:/scratch"]}},
    }
    broker = KernelBroker(config, services, rules)
    yield broker
    proxy.hold.unlink(missing_ok=True)
    for kernel in list(broker.kernels.values()):
        await broker.stop(kernel)
    services.stop()


def start_body(broker: KernelBroker, cwd: Path) -> dict[str, Any]:
    (env,) = [e for e in broker.services.catalog.list_environments_sync() if e.name == "py"]
    return {
        "kernel_id": str(uuid.uuid4()),
        "environment_id": env.id,
        "key": secrets.token_hex(16),
        "cwd": str(cwd),
    }


def containers_of(kernel_id: str) -> list[Any]:
    client = docker.from_env()
    try:
        owned = {"label": f"{labels.KERNEL_ID}={kernel_id}"}
        return client.containers.list(all=True, filters=owned)
    finally:
        client.close()


async def test_honest_folders_run_as_her(broker: KernelBroker, place: Place) -> None:
    """Her own folder and a shared one she may enter: the kernel runs there as her."""
    alice = place.hub_user(place.alice)
    for folder in (place.home(place.alice) / "project", place.shared / "common"):
        answer = await broker.start(alice, start_body(broker, folder))
        code = "import os; print(os.getuid(), os.getcwd())"
        out = await asyncio.to_thread(run_code, answer["connection"], code)
        assert out.split() == [str(place.alice.uid), str(folder)]
        await broker.stop(broker.of(alice.name, answer["kernel"]["kernel_id"]))


async def test_a_folder_behind_one_she_cannot_enter_is_refused(
    broker: KernelBroker, place: Place
) -> None:
    """Bob's public folder lies under a notebook root, but inside his 0700 folder."""
    body = start_body(broker, place.bobs_public)
    with pytest.raises(PolicyViolation, match="lies in a folder you cannot enter") as caught:
        await broker.start(place.hub_user(place.alice), body)
    assert str(place.bobs_public) in str(caught.value)
    # A link of hers to it is no way round: the link is followed as she would follow it.
    place.as_alice(f"ln -s {place.bobs_public} bobs")
    body = start_body(broker, place.home(place.alice) / "bobs")
    with pytest.raises(PolicyViolation, match="lies in a folder you cannot enter") as caught:
        await broker.start(place.hub_user(place.alice), body)
    assert str(place.bobs_public) not in str(caught.value)  # only what she gave is named
    assert containers_of(body["kernel_id"]) == []


async def test_an_admin_mount_she_can_replace_is_refused(
    broker: KernelBroker, place: Place
) -> None:
    """``{scratch}/{username}`` on a world-writable scratch tree: she makes her entry a
    link to Bob's folder before the broker mounts it."""
    mine = place.scratch / place.alice.name
    place.as_alice(f"ln -s {place.bobs_public} {mine}")
    try:
        body = start_body(broker, place.home(place.alice) / "project")
        with pytest.raises(PolicyViolation, match="cannot be given to the kernel") as caught:
            await broker.start(place.hub_user(place.alice, SCRATCH_GROUP), body)
        assert "lies in a folder you cannot enter" in str(caught.value)
        # Her own folder there, which she could replace at any moment, is refused as well.
        place.as_alice(f"rm {mine} && mkdir {mine}")
        with pytest.raises(PolicyViolation, match="could replace") as caught:
            await broker.start(place.hub_user(place.alice, SCRATCH_GROUP), body)
        assert f"can write {place.scratch} " in str(caught.value)
        assert containers_of(body["kernel_id"]) == []
        # The same folder made by the admin (root's, in the sticky tree) is mounted.
        subprocess.run(["rm", "-rf", str(mine)], check=True)
        _folder(mine, None, 0o755)
        answer = await broker.start(place.hub_user(place.alice, SCRATCH_GROUP), body)
        listing = "import os; print(os.listdir('/scratch'))"
        out = await asyncio.to_thread(run_code, answer["connection"], listing)
        assert out.strip() == "[]"
        await broker.stop(broker.of(place.alice.name, body["kernel_id"]))
    finally:
        subprocess.run(["rm", "-rf", str(mine)], check=True)


async def test_a_folder_swapped_for_a_link_before_the_mount_is_caught(
    broker: KernelBroker, place: Place, proxy: DockerProxy
) -> None:
    """The broker checks her project folder; before Docker mounts it she renames it and
    puts a link to Bob's folder in its place. The kernel must never be handed out."""
    home = place.home(place.alice)
    place.as_alice("rm -rf swapped && mkdir swapped")
    body = start_body(broker, home / "swapped")
    proxy.hold.touch()
    start = asyncio.ensure_future(broker.start(place.hub_user(place.alice), body))
    try:
        await eventually(proxy.held.exists, 120, "the container's start held", 0.02)
        place.as_alice(f"mv swapped swapped.was && ln -s {place.bobs_public} swapped")
    finally:
        proxy.hold.unlink()
    with pytest.raises(PolicyViolation, match="changed between its check and Docker's mount"):
        await start
    assert containers_of(body["kernel_id"]) == []
    assert body["kernel_id"] not in {k.kernel_id for k in broker.kernels.values()}
