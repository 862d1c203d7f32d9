"""The last gate, property-tested: whatever a user writes, Docker gets no more than allowed.

The property runs the real path a launch takes (the policy on a kernelspec's provisioner
config, an environment read back from a cache file the user wrote, the container
arguments, the gate) for arbitrary inputs, and checks the arguments that would reach
``client.containers.create`` against rules written out here independently of the code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traitlets.config import Config

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.docker.nvidia_runtime import GpuRuntime
from jupyter_gpuenv.environments.cache import ProbeCache
from jupyter_gpuenv.environments.model import environment_id, kernel_name_for
from jupyter_gpuenv.environments.snapshot import environment_from_json
from jupyter_gpuenv.errors import PolicyViolation
from jupyter_gpuenv.gpu_set import GpuSet
from jupyter_gpuenv.provisioning.container.gpu_request import plan_gpus
from jupyter_gpuenv.provisioning.container.orphans import ServerInstance
from jupyter_gpuenv.provisioning.container.request import (
    CONNECTION_FILE_IN_CONTAINER,
    ContainerRequest,
    allowance_for,
    create_arguments,
)
from jupyter_gpuenv.provisioning.kernel_errors import KernelStartFailed
from jupyter_gpuenv.provisioning.kernel_side import KERNEL_SIDE_IN_CONTAINER
from jupyter_gpuenv.provisioning.policy.launch_gate import check_create_arguments
from jupyter_gpuenv.provisioning.policy.launch_policy import (
    DOCKER_KEYS,
    enforce_policy,
)

IMAGE = "lab/torch:gate"
SCRATCH = Path(tempfile.mkdtemp(prefix="gpuenv-gate-"))
NOTEBOOKS = SCRATCH / "notebooks"
ADMIN_DATA = SCRATCH / "admin-data"
for folder in (NOTEBOOKS, ADMIN_DATA):
    folder.mkdir(exist_ok=True)
CONNECTION = SCRATCH / "kernel.json"
CONNECTION.write_text("{}")
ENV_ID = environment_id("docker", "torch", "torch")

HOSTILE_USERS = [
    "0", "00", "+0", "root", "0:0", "65534:0", "65534:42", "nobody:shadow", "65534:disk",
    "1000", "1000:1000", "65534", "65534:65534", "nobody", " 0", "-1", "0x0", "4294967296",
    "root:root", "daemon", "1:1", "65534:27", f"{os.getuid()}:{os.getgid()}",
]  # fmt: skip
HOSTILE_MOUNTS = [
    "/:/host", "/etc:/etc2:ro", "/var/run/docker.sock:/var/run/docker.sock",
    f"{ADMIN_DATA}:/data:ro", f"{ADMIN_DATA}:/data", f"{ADMIN_DATA}:/elsewhere",
    f"{NOTEBOOKS}:{CONNECTION_FILE_IN_CONTAINER}", {"source": "/root", "target": "/r"},
    f"/proc:{KERNEL_SIDE_IN_CONTAINER}/jupyter_gpuenv_kernel",
]  # fmt: skip
KEYS = sorted(DOCKER_KEYS) + [
    "privileged", "cap_add", "pid_mode", "ipc_mode", "userns_mode", "network_mode",
    "devices", "volumes", "security_opt", "group_add", "config", "log", "sysctls",
]  # fmt: skip

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
values = st.one_of(
    json_leaf,
    st.sampled_from(HOSTILE_USERS),
    st.lists(st.sampled_from(HOSTILE_MOUNTS), max_size=3),
    st.sampled_from([["ALL"], ["SYS_ADMIN"], ["seccomp=unconfined"], "host", [0, 1], "all"]),
    st.dictionaries(
        st.sampled_from(
            [
                "JUPYTERHUB_API_TOKEN", "NVIDIA_VISIBLE_DEVICES", "A", "JPY_API_TOKEN",
                "DOCKER_RESOURCE_NVIDIA-GPU", "docker_resource_nvidia_gpu",
                "nvidia_driver_capabilities", "LD_PRELOAD", " LD_LIBRARY_PATH", "ld_audit",
            ]
        ),  # fmt: skip
        st.text(max_size=4),
        max_size=2,
    ),
)
kernelspec_configs = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
poisoned_settings = st.dictionaries(
    st.sampled_from(["mounts", "user", "privileged", "cap_add", "environment", "gpus"]),
    values,
    max_size=4,
)


def gpuenv(restrict: bool, allow_root: bool) -> GpuEnv:
    c = Config()
    entry: dict[str, Any] = {"image": IMAGE, "mounts": [f"{ADMIN_DATA}:/data:ro"], "gpus": [0]}
    c.GpuEnv.docker_images = {"torch": entry}
    c.GpuEnv.restrict_to_configured_images = restrict
    c.GpuEnv.docker_allow_root = allow_root
    c.GpuEnv.docker_environment_allowlist = ["LANG", "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"]
    return GpuEnv(config=c)


def listing_item(settings: dict[str, Any], image: str) -> dict[str, Any]:
    """An entry of the saved listing as a hostile user would edit it."""
    return {
        "id": ENV_ID,
        "name": "torch",
        "kind": "docker",
        "display_name": "torch",
        "kernel_name": kernel_name_for(ENV_ID),
        "location": {"image": image, "image_id": None, "conda_env": None},
        "python_version": None,
        "python_executable": None,
        "torch_version": None,
        "cuda_version": None,
        "cudnn_version": None,
        "torch_arch_list": [],
        "ipykernel": True,
        "ipykernel_version": None,
        "labels": {},
        "problems": [],
        "compatibility": None,
        "cannot_start": None,
        "settings": settings,
    }


def container_arguments(
    config: GpuEnv, item: dict[str, Any], requested: dict[str, Any]
) -> tuple[dict[str, Any], Any] | None:
    """The create arguments the real path builds, or None when it refuses."""
    env = environment_from_json(item)
    if env is None:
        env = environment_from_json({k: v for k, v in item.items() if k != "settings"})
    assert env is not None and env.settings == {}  # the cache never carries settings
    try:
        launch = enforce_policy(config, env, requested, environ={}, supported=DOCKER_KEYS)
        request = ContainerRequest(
            kernel_id="k" * 32,
            environment_id=env.id,
            image="sha256:" + "1" * 64,
            python="/usr/bin/python3",
            connection_file=str(CONNECTION),
            cwd=str(NOTEBOOKS),
            settings=launch.settings(),
            instance=ServerInstance("sid", 1, "host", "1"),
            server_env={"LANG": "C", "JUPYTERHUB_API_TOKEN": "s", "JPY_API_TOKEN": "s"},
            env_allowlist=list(config.docker_environment_allowlist),
            allow_root=config.docker_allow_root,
        )
        args = create_arguments(request)
        check_create_arguments(args, allowance_for(request, launch.gpus))
    except (PolicyViolation, KernelStartFailed):
        return None
    return args, launch


def launch_gpus_all(args: dict[str, Any]) -> bool:
    """Whether the kernel was given every GPU (then NVIDIA_* variables change nothing)."""
    return any(r.get("Count") == -1 for r in args.get("device_requests") or [])


def assert_within_policy(args: dict[str, Any], config: GpuEnv) -> None:
    """The rules, spelled out: what the kernel gets is the server's or the admin's."""
    forbidden = {"privileged", "cap_add", "pid_mode", "ipc_mode", "uts_mode", "userns_mode",
                 "devices", "volumes", "volumes_from", "group_add", "sysctls"}  # fmt: skip
    assert not forbidden & set(args)
    assert args["network_mode"] == "host"
    assert args["security_opt"] == ["no-new-privileges"]
    uid, gid = (int(x) for x in args["user"].split(":"))
    if not config.docker_allow_root:
        if uid == 0:
            assert os.getuid() == 0 and "ALL" in args["cap_drop"]
        if gid == 0:
            assert uid == 0 and os.getuid() == 0 and "ALL" in args["cap_drop"]
        if 0 < gid < 1000:
            assert gid == os.getgid()
        if os.getuid() != 0:
            assert (uid, gid) == (os.getuid(), os.getgid())
    allowed_sources = {str(CONNECTION), str(NOTEBOOKS), str(ADMIN_DATA)}
    for mount in args["mounts"]:
        if mount["Target"].startswith(KERNEL_SIDE_IN_CONTAINER + "/jupyter_gpuenv_kernel"):
            assert mount["Source"].endswith("kernel") and mount["ReadOnly"]
            continue
        if mount["Target"].startswith(KERNEL_SIDE_IN_CONTAINER + "/fallback"):
            assert mount["ReadOnly"]
            continue
        if not config.restrict_to_configured_images and mount["Source"] not in allowed_sources:
            continue  # the admin lets kernelspecs add mounts; they run as the server's user
        assert mount["Source"] in allowed_sources, mount
        if mount["Target"] == CONNECTION_FILE_IN_CONTAINER:
            assert mount["Source"] == str(CONNECTION) and mount["ReadOnly"]
        if mount["Source"] == str(ADMIN_DATA) and config.restrict_to_configured_images:
            assert mount["Target"] == "/data" and mount["ReadOnly"]
    assert not any(k.startswith("JUPYTERHUB_") or k == "JPY_API_TOKEN" for k in args["environment"])
    for name in args["environment"]:  # device and loader variables: never the user's
        upper = name.strip().upper()
        assert not upper.startswith(("DOCKER_RESOURCE_", "LD_")), name
        assert not upper.startswith("NVIDIA_") or launch_gpus_all(args), name
    for request in args.get("device_requests") or []:
        assert request.get("Count") in (None, 0) and request.get("DeviceIDs") in (None, ["0"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requested=kernelspec_configs,
    poison=poisoned_settings,
    image=st.sampled_from([IMAGE, "evil/root:1"]),
    restrict=st.booleans(),
    allow_root=st.booleans(),
)
def test_no_kernelspec_or_cache_content_gets_past_the_policy(
    requested: dict[str, Any],
    poison: dict[str, Any],
    image: str,
    restrict: bool,
    allow_root: bool,
) -> None:
    config = gpuenv(restrict, allow_root)
    built = container_arguments(config, listing_item(poison, image), requested)
    if built is not None:
        assert_within_policy(built[0], config)


def test_the_plain_launch_passes_the_gate() -> None:
    """The property is not vacuous: an ordinary kernelspec is let through."""
    config = gpuenv(True, False)
    built = container_arguments(config, listing_item({}, IMAGE), {"environment_id": ENV_ID})
    assert built is not None
    args, launch = built
    assert {m["Source"] for m in args["mounts"]} >= {str(CONNECTION), str(ADMIN_DATA)}
    assert launch.gpus == GpuSet.parse([0])


EXTRAS = st.sampled_from(
    [
        ("privileged", True),
        ("cap_add", ["SYS_ADMIN"]),
        ("pid_mode", "host"),
        ("ipc_mode", "host"),
        ("userns_mode", "host"),
        ("devices", ["/dev/sda:/dev/sda"]),
        ("volumes", {"/": {"bind": "/host"}}),
        ("security_opt", ["seccomp=unconfined"]),
        ("security_opt", []),
        ("network_mode", "bridge"),
        ("user", "0:0"),
        ("user", "root"),
        ("user", "65534:42"),
        ("user", "65534:0"),
        ("working_dir", "/"),
        ("tmpfs", {"/etc": ""}),
        ("device_requests", [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}]),
        ("device_requests", [{"Driver": "", "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}]),
        ("environment", {"JUPYTERHUB_API_TOKEN": "x"}),
        ("environment", {"DOCKER_RESOURCE_NVIDIA-GPU": "all"}),
        ("environment", {"docker_resource_gpu": "GPU-1"}),
        ("environment", {"NVIDIA_VISIBLE_DEVICES": "all"}),
        ("environment", {"LD_PRELOAD": "/tmp/evil.so"}),
        ("mounts", [{"Type": "bind", "Source": "/", "Target": "/host", "ReadOnly": False}]),
        ("mounts", [{"Type": "bind", "Source": str(ADMIN_DATA), "Target": "/data"}]),
        ("mounts", [{"Type": "volume", "Source": "x", "Target": "/x", "ReadOnly": True}]),
    ]
)


@settings(max_examples=200, deadline=None)
@given(extras=st.lists(EXTRAS, min_size=1, max_size=3))
def test_any_widening_of_the_final_arguments_is_refused(
    extras: list[tuple[str, Any]],
) -> None:
    """Whatever path built them, arguments beyond the allowance stop at the gate."""
    config = gpuenv(True, False)
    built = container_arguments(config, listing_item({}, IMAGE), {"environment_id": ENV_ID})
    assert built is not None
    args, launch = built
    request = ContainerRequest(
        kernel_id="k" * 32,
        environment_id=ENV_ID,
        image="sha256:" + "1" * 64,
        python="/usr/bin/python3",
        connection_file=str(CONNECTION),
        cwd=str(NOTEBOOKS),
        settings=launch.settings(),
        instance=ServerInstance("sid", 1, "host", "1"),
    )
    for key, value in extras:
        if key in ("mounts", "environment"):
            args[key] = list(args[key]) + value if key == "mounts" else {**args[key], **value}
        else:
            args[key] = value
    if os.getuid() == 0 and args["user"] == "0:0" and "cap_drop" in args:
        args.pop("cap_drop")  # a root server's own kernel: uid 0 only without capabilities
    with pytest.raises(PolicyViolation):
        check_create_arguments(args, allowance_for(request, launch.gpus))


@settings(max_examples=200, deadline=None)
@given(
    content=st.recursive(
        json_leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    ),
    probe_result=st.dictionaries(
        st.sampled_from(["problems", "ipykernel", "torch_version", "transient", "mounts", "user"]),
        json_leaf,
        max_size=4,
    ),  # fmt: skip
)
def test_cache_content_of_any_shape_is_ignored_or_read_as_facts(
    content: Any, probe_result: dict[str, Any]
) -> None:
    path = Path(tempfile.mkdtemp(dir=SCRATCH)) / "catalog-cache.json"
    for payload in (
        content,
        {"format": 2, "probes": content, "listing": content, "listing_key": "k"},
        {"format": 2, "probes": {"x#y": {"result": probe_result, "at": 1}}, "listing": []},
    ):
        path.write_text(json.dumps(payload))
        cache = ProbeCache(path)
        for entry, _ in cache._entries.values():
            assert set(entry.to_json()) >= {"problems", "ipykernel"}
            assert not hasattr(entry, "mounts") and not hasattr(entry, "user")
        for item in cache.listing("k") or []:
            env = environment_from_json(item)
            assert env is not None and env.settings == {}


MIG = "MIG-4a7c1a0e-0b55-5d11-9a8f-0e7f3b2c1d00"


@pytest.mark.parametrize("runtime", [GpuRuntime("nvidia", "toolkit"), GpuRuntime("cdi", "specs")])
@pytest.mark.parametrize("allowed", [GpuSet.all(), GpuSet.parse([0, 2]), GpuSet.parse([MIG])])
def test_gpu_requests_pass_within_the_selection_and_stop_beyond_it(
    runtime: GpuRuntime, allowed: GpuSet
) -> None:
    """What plan_gpus asks Docker for passes the gate; more GPUs than allowed do not."""
    request = ContainerRequest(
        kernel_id="k" * 32,
        environment_id=ENV_ID,
        image="sha256:" + "1" * 64,
        python="/usr/bin/python3",
        connection_file=str(CONNECTION),
        cwd=str(NOTEBOOKS),
        settings={},
        instance=ServerInstance("sid", 1, "host", "1"),
        device_requests=plan_gpus(allowed, runtime).device_requests,
    )
    args = create_arguments(request)
    check_create_arguments(args, allowance_for(request, allowed))
    if allowed.is_all:
        return
    narrower = GpuSet.parse([0]) if MIG not in (allowed.ids or ()) else GpuSet.none()
    with pytest.raises(PolicyViolation, match="GPU"):
        check_create_arguments(args, allowance_for(request, narrower))
    widened = plan_gpus(GpuSet.all(), runtime).device_requests
    with pytest.raises(PolicyViolation, match="GPU"):
        check_create_arguments(
            {**args, "device_requests": widened}, allowance_for(request, allowed)
        )


def test_with_an_allowlist_the_gate_refuses_any_other_name_a_kernelspec_could_add() -> None:
    """The final arguments carry the server's and the admin's variables and the package's
    own; with c.GpuEnv.kernel_env_allowlist, any other name is refused at the gate too."""
    config = gpuenv(True, False)
    config.kernel_env_allowlist = ["OMP_NUM_THREADS"]
    env = environment_from_json(listing_item({}, IMAGE))
    launch = enforce_policy(config, env, {}, environ={}, supported=DOCKER_KEYS)
    request = ContainerRequest(
        kernel_id="k" * 32,
        environment_id=ENV_ID,
        image="sha256:" + "1" * 64,
        python="/usr/bin/python3",
        connection_file=str(CONNECTION),
        cwd=str(NOTEBOOKS),
        settings=launch.settings(),
        instance=ServerInstance("sid", 1, "host", "1"),
        server_env={"LANG": "C", "JUPYTERHUB_API_TOKEN": "s"},
        env_allowlist=list(config.docker_environment_allowlist),
        kernel_env_allowlist=["OMP_NUM_THREADS"],
    )
    args = create_arguments(request)
    admin_environment = launch.admin.get("environment") or {}
    allowance = allowance_for(request, launch.gpus, admin_environment)
    check_create_arguments(args, allowance)  # the plain launch passes
    check_create_arguments(
        {**args, "environment": {**args["environment"], "OMP_NUM_THREADS": "2"}}, allowance
    )
    for name in ("PYTHONSTARTUP", "BASH_ENV"):
        widened = {**args, "environment": {**args["environment"], name: "/x"}}
        with pytest.raises(PolicyViolation, match=f"environment variable {name} \\(not among"):
            check_create_arguments(widened, allowance)
    # A variable the server gives changed by a kernelspec is not the server's any more.
    changed = {**args, "environment": {**args["environment"], "LANG": "xx"}}
    with pytest.raises(PolicyViolation, match="environment variable LANG"):
        check_create_arguments(changed, allowance)
