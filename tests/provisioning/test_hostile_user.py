"""A hostile user against a server running as that user (a real, non-root system account).

The account is created for the module; it reaches Docker through the socket's group (as
a user who may start Docker kernels must). What it controls is what it can write: its
kernelspecs in its Jupyter data dir, the catalog cache there, and the environments in its
folders. Two servers: one with ``restrict_to_configured_images`` (as docs/jupyterhub.md
recommends), one without it.
"""

from __future__ import annotations

import json
import os
import urllib.request
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

pytestmark = pytest.mark.docker

PLAIN_ID = environment_id("docker", "plain", "plain")
PROBE_TIMEOUT = 15


@pytest.fixture(scope="module")
def hostile() -> Iterator[SystemUser]:
    try:
        with system_user() as user:
            yield user
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must run the hostile-user tests: {exc}")
        pytest.skip(str(exc))


def own(path: Path, user: SystemUser) -> Path:
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, user.uid, user.gid)
    return path


def conda_env_that_holds_the_scan(envs: Path) -> None:
    """A conda env whose python never answers: the first scan waits for its probe."""
    (envs / "sleeper" / "conda-meta").mkdir(parents=True)
    python = envs / "sleeper" / "bin" / "python"
    python.parent.mkdir()
    python.write_text("#!/bin/sh\nexec sleep 600\n")
    python.chmod(0o755)


def unreadable_environments(envs: Path) -> None:
    """A root-owned 0700 folder, and a python symlink into /root."""
    locked = envs / "locked"
    locked.mkdir()
    (locked / "conda-meta").mkdir()
    locked.chmod(0o700)
    (envs / "escaped" / "conda-meta").mkdir(parents=True)
    (envs / "escaped" / "bin").mkdir()
    (envs / "escaped" / "bin" / "python").symlink_to("/root/.gpuenv-hidden/bin/python3")


def listing_of(server: ServerProcess) -> dict[str, Any]:
    """The environments as the server lists them (waits for its first scan)."""
    request = urllib.request.Request(
        f"{server.url}/gpuenv/api/environments", headers=server.headers
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def poisoned(cache: dict[str, Any]) -> dict[str, Any]:
    """The issue's attack on the file the server wrote: root and the host's / in every
    listed environment's settings, and in every probe result."""
    for item in cache["listing"]:
        item["settings"] = {"mounts": ["/:/host"], "user": "root", "privileged": True}
    for entry in cache["probes"].values():
        entry["result"].update({"mounts": ["/:/host"], "user": "root"})
    return cache


def start_as(
    user: SystemUser,
    settings: dict[str, Any],
    kernelspecs: dict[str, dict[str, Any]],
    cache: dict[str, Any] | None = None,
) -> ServerProcess:
    root_dir = make_shared_dir("gpuenv-hostile-nb-", user.uid, user.gid)

    def prepare(home: Path) -> None:
        if cache is not None:
            path = home / "data" / "gpuenv" / "catalog-cache.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(cache))
        for name, config in kernelspecs.items():
            folder = home / "data" / "kernels" / name
            folder.mkdir(parents=True, exist_ok=True)
            spec = {
                "argv": [],
                "display_name": name,
                "language": "python",
                "metadata": {
                    "kernel_provisioner": {
                        "provisioner_name": "gpuenv-docker-provisioner",
                        "config": {"environment_id": PLAIN_ID, **config},
                    }
                },
            }
            (folder / "kernel.json").write_text(json.dumps(spec))
        own(home / "data", user)

    return start_server(
        root_dir,
        settings,
        user.uid,
        user.gid,
        prepare=prepare,
        extra_env={"JUPYTERHUB_API_TOKEN": "hub-secret-of-the-server"},
    )


HOSTILE_KERNELSPECS: dict[str, dict[str, Any]] = {
    "k-plus-zero": {"user": "+0"},
    "k-zero-zero": {"user": "00"},
    "k-root-group": {"user": "0:0"},
    "k-nobody-root-group": {"user": "65534:0"},
    "k-shadow": {"user": "65534:42"},
    "k-shadow-by-name": {"user": "nobody:shadow"},
    "k-disk-by-name": {"user": "nobody:disk"},
    "k-root-by-name": {"user": "root"},
    "k-nobody": {"user": "65534"},
    "k-config": {"config": {"Foo": {"bar": 1}}},
    "k-log": {"log": "x"},
    "k-privileged": {"privileged": True},
    "k-cap-add": {"cap_add": ["SYS_ADMIN"]},
    "k-namespaces": {"pid_mode": "host", "network_mode": "bridge"},
    "k-devices": {"devices": ["/dev/sda:/dev/sda"]},
    "k-security-opt": {"security_opt": ["apparmor=unconfined"]},
    "k-volumes": {"volumes": {"/": {"bind": "/host"}}},
    # Variables a container runtime reads to pick GPUs (Swarm's generic resource as the
    # NVIDIA runtime's swarm-resource), and the loader's.
    "k-swarm-gpus": {"environment": {"DOCKER_RESOURCE_NVIDIA-GPU": "all"}},
    "k-swarm-gpus-lower": {"environment": {"docker_resource_nvidia_gpu": "GPU-0"}},
    "k-preload": {"environment": {"LD_PRELOAD": "/tmp/evil.so"}},
}


@pytest.fixture(scope="module")
def restricted(hostile: SystemUser, python_kernel_image: str, tmp_path_factory) -> Iterator[Any]:
    envs = make_shared_dir("gpuenv-hostile-envs-", hostile.uid, hostile.gid)
    conda_env_that_holds_the_scan(envs)
    own(envs, hostile)
    unreadable_environments(envs)
    settings = {
        "docker_images": {"plain": python_kernel_image},
        "restrict_to_configured_images": True,
        "conda_envs_dirs": [str(envs)],
        "probe_timeout": PROBE_TIMEOUT,
        "docker_environment_allowlist": ["JUPYTERHUB_API_TOKEN", "LANG"],
    }
    kernelspecs = {**HOSTILE_KERNELSPECS, "k-host-mount": {"mounts": ["/:/host"]}}
    # A first server writes the cache; the user poisons it; the next server starts with
    # it while the sleeping environment holds its first scan back.
    first = start_as(hostile, settings, kernelspecs)
    try:
        assert any(env["name"] == "plain" for env in listing_of(first)["environments"])
        cache = json.loads((first.home / "data" / "gpuenv" / "catalog-cache.json").read_text())
    finally:
        first.stop()
    assert cache["listing"], "the first server saved its listing"
    server = start_as(hostile, settings, kernelspecs, poisoned(cache))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def unrestricted(hostile: SystemUser, python_kernel_image: str) -> Iterator[ServerProcess]:
    settings = {"docker_images": {"plain": python_kernel_image}}
    server = start_as(hostile, settings, HOSTILE_KERNELSPECS)
    yield server
    server.stop()


def inspect(docker_client: Any, kernel_id: str) -> dict[str, Any]:
    (container,) = kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    return container.attrs


def leftovers(server: ServerProcess) -> list[str]:
    """Connection files (they hold the HMAC key) in the server's runtime dir."""
    runtime = server.home / "runtime"
    return sorted(
        str(p.relative_to(runtime))
        for p in runtime.rglob("*")
        if p.is_file() and ("connection" in p.name or p.name.startswith("kernel-"))
    )


async def test_poisoned_cache_and_held_back_scan_give_no_root_and_no_host(
    restricted: ServerProcess, hostile: SystemUser, docker_client: Any
) -> None:
    code, kernel = await restricted.request(
        "POST", "/api/kernels", {"name": kernel_name_for(PLAIN_ID)}
    )
    assert code == 201, kernel
    try:
        attrs = inspect(docker_client, kernel["id"])
        assert attrs["Config"]["User"] == f"{hostile.uid}:{hostile.gid}"
        assert not attrs["HostConfig"].get("Privileged")
        assert attrs["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
        sources = {m["Source"] for m in attrs["Mounts"]}
        assert "/" not in sources and not any(m["Destination"] == "/host" for m in attrs["Mounts"])
        env = dict(item.partition("=")[::2] for item in attrs["Config"]["Env"])
        assert "JUPYTERHUB_API_TOKEN" not in env, "allowlisted or not, the Hub token stays out"
    finally:
        await restricted.request("DELETE", f"/api/kernels/{kernel['id']}")
    assert "JUPYTERHUB_API_TOKEN not passed to the container" in restricted.log_text()
    saved = (restricted.home / "data" / "gpuenv" / "catalog-cache.json").read_text()
    assert '"settings"' not in saved and "/host" not in saved, "the file was rebuilt"


async def test_unreadable_folders_and_symlinks_are_problems_not_errors(
    restricted: ServerProcess,
) -> None:
    for method, path in (
        ("GET", "/gpuenv/api/environments"),
        ("POST", "/gpuenv/api/environments/refresh"),
    ):
        code, listing = await restricted.request(method, path)
        assert code == 200, listing
        by_name = {env["name"]: env for env in listing["environments"]}
        assert {"plain", "locked", "escaped", "sleeper"} <= set(by_name)
        assert "cannot be read" in " ".join(by_name["locked"]["problems"])
        assert "/root/.gpuenv-hidden" in " ".join(by_name["escaped"]["problems"])
    code, report = await restricted.request("GET", "/gpuenv/api/doctor")
    assert code == 200, report


@pytest.mark.parametrize(
    ("kernelspec", "named"),
    [
        ("k-plus-zero", "user"),
        ("k-shadow", "user"),
        ("k-config", "config"),
        ("k-privileged", "privileged"),
        ("k-namespaces", "pid_mode"),
        ("k-host-mount", "mounts"),
        ("k-swarm-gpus", "DOCKER_RESOURCE_NVIDIA-GPU (it would change the GPUs)"),
        ("k-swarm-gpus-lower", "docker_resource_nvidia_gpu"),
        ("k-preload", "LD_PRELOAD (it would change what the kernel's processes load)"),
    ],
)
async def test_restricted_server_refuses_with_the_setting_named(
    restricted: ServerProcess, docker_client: Any, kernelspec: str, named: str
) -> None:
    before = leftovers(restricted)
    code, reply = await restricted.request("POST", "/api/kernels", {"name": kernelspec})
    assert code == 403, reply
    assert named in reply["message"]
    assert leftovers(restricted) == before


async def test_every_spelling_of_root_and_every_widening_is_refused(
    unrestricted: ServerProcess, docker_client: Any
) -> None:
    """Without the restriction too: 403 with the reason, never a 500, nothing left."""
    before = leftovers(unrestricted)
    containers_before = len(kernel_containers(docker_client))
    answers = {}
    for name in HOSTILE_KERNELSPECS:
        code, reply = await unrestricted.request("POST", "/api/kernels", {"name": name})
        answers[name] = (code, (reply or {}).get("message", reply))
    assert all(code == 403 for code, _ in answers.values()), answers
    for name in ("k-config", "k-privileged", "k-cap-add", "k-devices", "k-volumes"):
        assert "does not support" in answers[name][1], answers[name]
    assert "neither a user name nor a uid" in answers["k-plus-zero"][1]
    assert "is uid 0" in answers["k-zero-zero"][1] and "is uid 0" in answers["k-root-by-name"][1]
    assert "privileged group root (0)" in answers["k-nobody-root-group"][1]
    assert "privileged group shadow" in answers["k-shadow"][1]
    assert "starts kernels only as that user" in answers["k-nobody"][1]
    assert leftovers(unrestricted) == before
    assert len(kernel_containers(docker_client)) <= containers_before
