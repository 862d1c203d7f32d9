"""KernelBroker on the real engine, for two real system users, without the Hub in between.

The Hub's part (who is calling) is tests/broker/test_broker_hub.py; here the broker is
handed the callers as the Hub would name them, and everything after that is real: the
catalog probes the image, containers run as each user's uid:gid in their folder, the
kernel answers over ZeroMQ with the connection info the broker returned, and a second
broker with the same instance id takes the kernels back.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import docker
import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import LocalPortCache

from jupyter_gpuenv.broker.encryption import curve_problem
from jupyter_gpuenv.broker.kernel_record import NotYours
from jupyter_gpuenv.broker.kernels import KernelBroker
from jupyter_gpuenv.broker.rules import HubUser
from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.errors import PolicyViolation
from jupyter_gpuenv.provisioning import kernel_history, start_progress
from jupyter_gpuenv.provisioning.container import orphans
from jupyter_gpuenv.provisioning.container.readiness import PORT_NAMES
from jupyter_gpuenv.services import Services
from tests.provisioning.server_process import make_shared_dir
from tests.support import kernel_calls
from tests.support.docker_engine import running_in_ci
from tests.support.system_user import SystemUser, UserUnavailable, system_user

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def two_users() -> Iterator[tuple[SystemUser, SystemUser]]:
    try:
        with (
            system_user("gpuenvbra", system=False) as first,
            system_user("gpuenvbrb", system=False) as second,
        ):
            yield first, second
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the broker tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def homes(two_users: tuple[SystemUser, SystemUser]) -> Iterator[Path]:
    """A world-traversable folder holding one 0700 home per user."""
    root = make_shared_dir("gpuenv-broker-homes-", None, None)
    for user in two_users:
        home = root / user.name
        home.mkdir(mode=0o700)
        os.chown(home, user.uid, user.gid)
    yield root
    for path in sorted(root.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    root.rmdir()


def hub_user(user: SystemUser, homes: Path, groups: tuple[str, ...] = ()) -> HubUser:
    return HubUser(user.name, groups, user.uid, user.gid, str(homes / user.name))


@pytest.fixture
async def broker(
    python_kernel_image: str, homes: Path, docker_client: docker.DockerClient
) -> AsyncIterator[KernelBroker]:
    orphans.use_instance_id(f"gpuenv-broker-test-{secrets.token_hex(4)}")
    config = GpuEnv()
    config.docker_images = {
        "python": {"image": python_kernel_image, "gpus": "none"},
        "other": {"image": python_kernel_image, "gpus": "none", "display_name": "Other"},
    }
    config.restrict_to_configured_images = True
    config.kernel_start_timeout = 120
    services = Services.build(config, cache_path=None)
    rules = {
        "default": {
            "environments": ["python"],
            "max_kernels": 1,
            "notebook_roots": [f"{homes}/{{username}}"],
        },
        "groups": {"team": {"environments": ["other"], "max_kernels": 2}},
        "users": {},
    }
    broker = KernelBroker(config, services, rules)
    yield broker
    for kernel in list(broker.kernels.values()):
        await broker.stop(kernel)
    services.stop()


def env_id(broker: KernelBroker, name: str) -> str:
    found = [e for e in broker.services.catalog.list_environments_sync() if e.name == name]
    assert found, [e.name for e in broker.services.catalog.list_environments_sync()]
    return found[0].id


def start_body(broker: KernelBroker, name: str = "python", **extra: Any) -> dict[str, Any]:
    return {
        "kernel_id": str(uuid.uuid4()),
        "environment_id": env_id(broker, name),
        "key": secrets.token_hex(16),
        "signature_scheme": "hmac-sha256",
        **extra,
    }


def run_code(answer: dict[str, Any], code: str) -> str:
    return kernel_calls.run_code(answer["connection"], code)


async def test_a_kernel_runs_as_its_user_in_their_folder(
    broker: KernelBroker,
    two_users: tuple[SystemUser, SystemUser],
    homes: Path,
    docker_client: docker.DockerClient,
) -> None:
    first, _ = two_users
    folder = homes / first.name
    answer = await broker.start(hub_user(first, homes), start_body(broker, cwd=str(folder)))
    code = (
        "import os; open('made-by-kernel.txt', 'w').write('x'); "
        "print(os.getuid(), os.getgid(), os.getcwd())"
    )
    out = await asyncio.to_thread(run_code, answer, code)
    assert out.split() == [str(first.uid), str(first.gid), str(folder)]
    made = folder / "made-by-kernel.txt"
    assert (made.stat().st_uid, made.stat().st_gid) == (first.uid, first.gid)
    kernel_id = answer["kernel"]["kernel_id"]
    container = docker_client.containers.get(answer["kernel"]["container"])
    assert container.labels[labels.USER] == first.name
    assert container.attrs["Config"]["User"] == f"{first.uid}:{first.gid}"
    assert container.attrs["HostConfig"]["Privileged"] is False
    # The broker keeps no kernel history (its kernels' servers do), and it holds the
    # kernel's five ports from its own port cache until the stop gives them back.
    assert kernel_history.known_history(kernel_id) is None
    held = set(LocalPortCache.instance().currently_used_ports)
    ports = {answer["connection"][name] for name in PORT_NAMES}
    assert ports <= held
    await broker.stop(broker.of(first.name, kernel_id))
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container.id)
    assert not ports & set(LocalPortCache.instance().currently_used_ports)
    assert kernel_history.known_history(kernel_id) is None


async def test_another_users_kernel_is_not_found(
    broker: KernelBroker, two_users: tuple[SystemUser, SystemUser], homes: Path
) -> None:
    first, second = two_users
    answer = await broker.start(hub_user(first, homes), start_body(broker))
    kernel_id = answer["kernel"]["kernel_id"]
    with pytest.raises(NotYours):
        broker.of(second.name, kernel_id)
    # The same kernel id from the other user is refused, not a takeover.
    body = start_body(broker, kernel_id=kernel_id)
    with pytest.raises(Exception, match="already in use"):
        await broker.start(hub_user(second, homes), body)
    assert broker.of(first.name, kernel_id).user == first.name


@pytest.mark.parametrize(
    ("body_extra", "message"),
    [
        ({"cwd": "/etc"}, "outside the folders your kernels may use"),
        ({"config": {"mounts": ["/:/host"]}}, "extra mounts"),
        ({"config": {"privileged": True}}, "privileged"),
        ({"config": {"user": "0:0"}}, "user"),
        ({"config": {"image": "someone/else:latest"}}, "someone/else:latest"),
    ],
)
async def test_requests_beyond_the_rules_are_refused(
    broker: KernelBroker,
    two_users: tuple[SystemUser, SystemUser],
    homes: Path,
    docker_client: docker.DockerClient,
    body_extra: dict[str, Any],
    message: str,
) -> None:
    first, _ = two_users
    with pytest.raises(PolicyViolation, match=message):
        await broker.start(hub_user(first, homes), start_body(broker, **body_extra))
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{labels.USER}={first.name}"}
    )


async def test_another_users_folder_is_refused(
    broker: KernelBroker, two_users: tuple[SystemUser, SystemUser], homes: Path
) -> None:
    first, second = two_users
    # Resolved as the user: the other's 0700 home is closed to them.
    with pytest.raises(PolicyViolation, match="a folder you cannot open"):
        await broker.start(
            hub_user(first, homes), start_body(broker, cwd=str(homes / second.name))
        )
    # A folder they may open, outside their notebook roots.
    with pytest.raises(PolicyViolation, match="outside the folders"):
        await broker.start(hub_user(first, homes), start_body(broker, cwd=str(homes)))
    # A symlink in the user's own folder to the other's is followed as the user would.
    link = homes / first.name / "to-other"
    link.symlink_to(homes / second.name)
    try:
        with pytest.raises(PolicyViolation, match="a folder you cannot open"):
            await broker.start(hub_user(first, homes), start_body(broker, cwd=str(link)))
    finally:
        link.unlink()


async def test_environments_and_quota_follow_groups(
    broker: KernelBroker, two_users: tuple[SystemUser, SystemUser], homes: Path
) -> None:
    first, second = two_users
    plain, team = hub_user(first, homes), hub_user(second, homes, ("team",))
    assert [e["name"] for e in broker.environments(plain)] == ["python"]
    assert sorted(e["name"] for e in broker.environments(team)) == ["other", "python"]
    with pytest.raises(PolicyViolation, match="not among the environments you may use"):
        await broker.start(plain, start_body(broker, "other"))
    await broker.start(plain, start_body(broker))
    with pytest.raises(PolicyViolation, match="may run 1 at once"):
        await broker.start(plain, start_body(broker))
    await broker.start(team, start_body(broker, "other"))
    await broker.start(team, start_body(broker))
    with pytest.raises(PolicyViolation, match="may run 2 at once"):
        await broker.start(team, start_body(broker))


async def test_a_restarted_broker_takes_its_kernels_back(
    broker: KernelBroker, two_users: tuple[SystemUser, SystemUser], homes: Path
) -> None:
    first, _ = two_users
    answer = await broker.start(hub_user(first, homes), start_body(broker))
    kernel_id = answer["kernel"]["kernel_id"]
    again = KernelBroker(broker.config, broker.services, broker.rules)
    assert await again.reattach() >= 1
    kernel = again.of(first.name, kernel_id)
    assert (await again.state(kernel))["Running"]
    assert "x" == (await asyncio.to_thread(run_code, answer, "print('x')")).strip()
    await again.stop(kernel)
    broker.kernels.pop(kernel_id)


async def test_unencrypted_kernels_are_refused_unless_the_admin_allows_them(
    broker: KernelBroker,
    two_users: tuple[SystemUser, SystemUser],
    homes: Path,
    old_ipykernel_image: str,
) -> None:
    first, _ = two_users
    user = hub_user(first, homes)
    with pytest.raises(PolicyViolation, match="Unencrypted kernels are not allowed"):
        await broker.start(user, start_body(broker, transport_encryption="disabled"))
    # An image whose ipykernel cannot encrypt is refused with the reason, before Docker.
    broker.config.docker_images = {
        **broker.config.docker_images,
        "old": {"image": old_ipykernel_image, "gpus": "none"},
    }
    broker.rules["default"]["environments"].append("old")
    broker.services.catalog.list_environments_sync(refresh=True)
    with pytest.raises(PolicyViolation, match="cannot encrypt its kernel's messages"):
        await broker.start(user, start_body(broker, "old"))
    assert not broker.kernels_of(first.name)
    broker.require_encryption = False
    answer = await broker.start(user, start_body(broker, "old"))
    assert "curve_publickey" not in answer["connection"]
    assert "ok" == (await asyncio.to_thread(run_code, answer, "print('ok')")).strip()


def answers(connection: dict[str, Any]) -> bool:
    """Whether the kernel replies to a kernel_info request on ``connection`` (5 s)."""
    client = BlockingKernelClient()
    client.load_connection_info(connection)
    client.start_channels(hb=False)
    try:
        client.kernel_info()
        client.get_shell_msg(timeout=5)
        return True
    except Empty:
        return False
    finally:
        client.stop_channels()


async def test_the_connection_handed_out_carries_the_keys_the_kernel_speaks(
    broker: KernelBroker, two_users: tuple[SystemUser, SystemUser], homes: Path
) -> None:
    """require_encryption (the default): the answer holds a CurveZMQ key pair; a client
    with it runs code, one without it gets no answer at all."""
    assert broker.require_encryption
    answer = await broker.start(hub_user(two_users[0], homes), start_body(broker))
    connection = answer["connection"]
    assert curve_problem(connection) is None, connection.keys()
    assert "ok" == (await asyncio.to_thread(run_code, answer, "print('ok')")).strip()
    assert await asyncio.to_thread(answers, connection)
    plain = {k: v for k, v in connection.items() if not k.startswith("curve_")}
    assert not await asyncio.to_thread(answers, plain)


async def test_starts_sent_together_are_admitted_first_come_up_to_the_quota(
    broker: KernelBroker, two_users: tuple[SystemUser, SystemUser], homes: Path
) -> None:
    first, _ = two_users
    user = hub_user(first, homes)
    results = await asyncio.gather(
        *(broker.start(user, start_body(broker)) for _ in range(3)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, PolicyViolation)]
    assert (len(admitted), len(refused)) == (1, 2), results
    assert "may run 1 at once" in refused[0].message


async def test_a_start_refused_after_its_environment_was_resolved_is_closed(
    python_kernel_image: str,
    two_users: tuple[SystemUser, SystemUser],
    homes: Path,
) -> None:
    """The GPU quota is checked once the environment's GPUs are known: the refusal closes
    the start's progress as failed and gives its ports back."""
    config = GpuEnv()
    config.docker_images = {"gpu": {"image": python_kernel_image, "gpus": 1}}
    config.restrict_to_configured_images = True
    services = Services.build(config, cache_path=None)
    rules = {
        "default": {"environments": ["gpu"], "max_gpus": 0, "notebook_roots": [str(homes)]},
        "groups": {},
        "users": {},
    }
    broker = KernelBroker(config, services, rules)
    try:
        body = start_body(broker, "gpu")
        held = set(LocalPortCache.instance().currently_used_ports)
        with pytest.raises(PolicyViolation, match="Quota: this kernel asks for 1 GPU"):
            await broker.start(hub_user(two_users[0], homes), body)
        (progress,) = start_progress.starts(kernel_id=body["kernel_id"])
        assert progress.state == "failed" and "Quota" in (progress.reason or "")
        assert set(LocalPortCache.instance().currently_used_ports) == held
        assert broker.kernels == {}
    finally:
        services.stop()
