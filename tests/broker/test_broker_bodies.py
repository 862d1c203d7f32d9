"""The kernel broker, property-tested: whatever body a Hub user sends to start a kernel,
the container arguments that could reach Docker stay inside the admin's rules for them.

Each example runs the broker's pure steps of a start (broker/kernels.py: fields, rules,
environment, notebook folder, encryption, the provisioner's keyword split, the policy, the
Hub user's uid:gid as the admin's ``user``, the GPU choice, the request, the last gate).
What passes is checked against rules written out here: the user's uid:gid, no privilege,
only the kernel side's, the notebook folder's (under the roots) and the rules' mounts, no
guarded variable but the admin's or the GPU plan's, no Hub secret, the rules' memory
limit, an image the user may run, GPUs within the quota. No Docker, no Hub, no mocks.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from jupyter_client.kernelspec import KernelSpec
from traitlets.config import Config

from jupyter_gpuenv.broker import rules as broker_rules
from jupyter_gpuenv.broker.kernels import (
    START_KEYS,
    KernelBroker,
    _kernel_name,
    _start_fields,
    provisioner_config,
)
from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.docker.nvidia_runtime import GpuRuntime
from jupyter_gpuenv.environments.model import Environment, environment_id, kernel_name_for
from jupyter_gpuenv.errors import GpuEnvError, PolicyViolation
from jupyter_gpuenv.provisioning.container.gpu_request import plan_gpus
from jupyter_gpuenv.provisioning.container.orphans import ServerInstance
from jupyter_gpuenv.provisioning.container.provisioner import DockerProvisioner
from jupyter_gpuenv.provisioning.container.request import (
    CONNECTION_FILE_IN_CONTAINER,
    ContainerRequest,
    allowance_for,
    create_arguments,
    parse_mount,
)
from jupyter_gpuenv.provisioning.kernel_side import KERNEL_SIDE_IN_CONTAINER, kernel_side_sources
from jupyter_gpuenv.provisioning.policy.launch_gate import check_create_arguments, guarded_variable
from jupyter_gpuenv.provisioning.policy.launch_policy import DOCKER_KEYS, enforce_policy

SCRATCH = Path(tempfile.mkdtemp(prefix="gpuenv-broker-bodies-"))
HOME, SHARED, OUTSIDE = SCRATCH / "home" / "alice", SCRATCH / "shared", SCRATCH / "outside"
NOTEBOOKS = HOME / "notebooks"
SCRATCH_ROOT = SCRATCH / "scratch"  # the admin's: alice may write her folder, not this
for folder in (NOTEBOOKS / "project", SCRATCH_ROOT / "alice", SHARED, OUTSIDE):
    folder.mkdir(parents=True, exist_ok=True)
(NOTEBOOKS / "escape").symlink_to(OUTSIDE)
CONNECTION = SCRATCH / "kernel.json"
CONNECTION.write_text("{}")
ALICE = broker_rules.HubUser("alice", ("ml",), 4321, 4322, str(HOME))
# Folders are resolved as alice's uid would see them: her home and scratch are hers.
SCRATCH.chmod(0o755)
for owned in (HOME, *HOME.rglob("*"), SCRATCH_ROOT / "alice"):
    os.chown(owned, ALICE.uid, ALICE.gid, follow_symlinks=False)
HOST_GPUS = [f"GPU-{i}aaaaaaa-0000-0000-0000-00000000000{i}" for i in range(4)]
IMAGES = {"cpu": "lab/cpu:1", "torch": "lab/torch:2", "secret": "lab/secret:1"}
_config = Config()
_config.GpuEnv.docker_images = {
    "cpu": {"image": IMAGES["cpu"], "gpus": "none", "environment": {"LANG": "C.UTF-8"}},
    "torch": {"image": IMAGES["torch"], "gpus": 2, "mem_limit": "64g",
              "environment": {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility,video"}},
    "secret": {"image": IMAGES["secret"], "mounts": [f"{OUTSIDE}:/outside"]},
}  # fmt: skip
BASE = GpuEnv(config=_config)
RULES: dict[str, Any] = {
    "default": {"environments": ["cpu"], "max_gpus": 0, "mem_limit": "2g",
                "mounts": [f"{SHARED}:/shared:ro"], "notebook_roots": ["{home}/notebooks"]},
    "groups": {"ml": {"environments": ["torch"], "max_gpus": 1,
                      "mounts": [f"{SCRATCH_ROOT}/{{username}}:/s/{{username}}"]},
               "admins": {"environments": ["*"], "max_gpus": 8, "notebook_roots": ["/"]}},
    "users": {"alice": {"mem_limit": "4g"}, "bob": {"environments": ["secret"]}},
}  # fmt: skip
for where, rule in {"default": RULES["default"], **RULES["groups"], **RULES["users"]}.items():
    broker_rules.check_rule(where, rule)  # as the broker's app does
USER_RULES = broker_rules.rules_for(ALICE, RULES["default"], RULES["groups"], RULES["users"])
ALLOWED_IMAGES = {IMAGES[n] for n in IMAGES if USER_RULES.allows_environment(n)}
PARSED_RULE_MOUNTS = [parse_mount(spec) for spec in USER_RULES.mounts]
RULE_MOUNTS = {(m["Source"], m["Target"]): m["ReadOnly"] for m in PARSED_RULE_MOUNTS}
CATALOG = [
    Environment(id=i, name=n, kind="docker", display_name=n, kernel_name=kernel_name_for(i),
                location={"image": image, "image_id": None, "conda_env": None},
                python_version="3.11.9", ipykernel=True, ipykernel_version="7.4.0")
    for n, image in [*IMAGES.items(), ("found", "lab/unlisted:1")]
    for i in [environment_id("docker", n, n)]
]  # fmt: skip
ENV_IDS = {env.name: env.id for env in CATALOG}


def allowed_environment(broker: KernelBroker, env_id: str) -> Environment:
    """KernelBroker._allowed_environment over this catalog."""
    for env in (e for e in CATALOG if e.id == env_id and broker._offered(e)):
        if USER_RULES.allows_environment(env.name):
            return env
    raise PolicyViolation(f"Environment {env_id!r} is not one this user may start.")


def start_arguments(body: dict[str, Any], host_known: bool) -> tuple[dict[str, Any], str] | None:
    """(create arguments, notebook folder or "") of a start; None when it is refused."""
    # The broker's own methods for its pure steps; they reach no services.
    host = (lambda: list(HOST_GPUS)) if host_known else None
    broker = KernelBroker(BASE, None, RULES, host_gpus=host)  # type: ignore[arg-type]
    try:
        kernel_id, env_id, _, _ = _start_fields(body)
        rules = broker_rules.rules_for(ALICE, RULES["default"], RULES["groups"], RULES["users"])
        env = allowed_environment(broker, env_id)
        folder = broker_rules.notebook_folder(body.get("cwd"), rules, ALICE)
        curve = broker._encryption(body.get("transport_encryption"), env) == "required"
        requested = provisioner_config(body.get("config"))
        spec = KernelSpec(argv=[], display_name=env.display_name, language="python")
        spec.name = _kernel_name(body.get("kernel_name"))
        provisioner = DockerProvisioner(
            kernel_id=kernel_id, kernel_spec=spec, parent=None,
            **requested, environment_id=env_id,
        )  # fmt: skip
        config = broker_rules.user_config(BASE, ALICE, rules)
        asked = dict(provisioner.requested_config, environment_id=provisioner.environment_id)
        launch = enforce_policy(config, env, asked, environ={}, supported=DOCKER_KEYS)
        launch.admin["user"] = f"{ALICE.uid}:{ALICE.gid}"  # ContainerPreparation.run_as
        launch.overrides.pop("user", None)
        launch.gpus = broker._choose_gpus(ALICE, rules, launch.gpus)
        plan = plan_gpus(launch.gpus, GpuRuntime("nvidia", "toolkit"))
        request = ContainerRequest(  # as ContainerPreparation.container_request builds it
            kernel_id=kernel_id, environment_id=env.id, python="/usr/bin/python3",
            image=launch.image or env.location["image"], connection_file=str(CONNECTION),
            cwd=folder or os.getcwd(),  # as DockerProvisioner.launch_kernel: cwd or os.getcwd()
            settings=launch.settings(), instance=ServerInstance("broker", 1, "host", "1"),
            hub_user=config.hub_user, allow_root=config.docker_allow_root,
            server_env={"JUPYTERHUB_API_TOKEN": "broker", "LD_PRELOAD": "/x.so", "LANG": "C"},
            env_allowlist=list(config.docker_environment_allowlist), curve=curve,
            gpu_environment=plan.environment, device_requests=plan.device_requests,
            session_name=str(body.get("session_name") or "")[:200],
        )  # fmt: skip
        args = create_arguments(request)
        admin_env = launch.admin.get("environment")
        admin_env = admin_env if isinstance(admin_env, dict) else None
        check_create_arguments(args, allowance_for(request, launch.gpus, admin_env))
    except GpuEnvError:
        return None
    return args, folder


def assert_within_rules(args: dict[str, Any], folder: str) -> None:
    """The rules, spelled out."""
    forbidden = {"privileged", "cap_add", "devices", "volumes", "volumes_from", "pid_mode",
                 "ipc_mode", "uts_mode", "userns_mode", "group_add", "sysctls", "runtime",
                 "ports", "cgroup_parent", "ulimits", "dns", "extra_hosts"}  # fmt: skip
    assert not forbidden & set(args)
    assert args["user"] == f"{ALICE.uid}:{ALICE.gid}"
    assert args["security_opt"] == ["no-new-privileges"] and args["network_mode"] == "host"
    assert args["image"] in ALLOWED_IMAGES
    assert args.get("mem_limit") == USER_RULES.limits["mem_limit"]
    assert "nano_cpus" not in args and "shm_size" not in args
    roots = [r.rstrip("/") + "/" for r in USER_RULES.notebook_roots]
    for mount in args["mounts"]:
        source, target, read_only = mount["Source"], mount["Target"], mount["ReadOnly"]
        assert mount["Type"] == "bind", mount
        if target == CONNECTION_FILE_IN_CONTAINER:
            assert source == str(CONNECTION) and read_only
        elif target.startswith(KERNEL_SIDE_IN_CONTAINER + "/"):
            assert read_only and source in map(str, kernel_side_sources()), mount
        elif (source, target) in RULE_MOUNTS:
            assert read_only or not RULE_MOUNTS[source, target], mount
        else:  # the notebook folder, at its own path, under the roots
            assert source == target == folder and (folder + "/").startswith(tuple(roots)), mount
    assert args.get("working_dir") in (None, folder)
    admin = BASE.docker_entry(next(n for n, i in IMAGES.items() if i == args["image"]))
    requests = args.get("device_requests") or []
    ids = [i for r in requests for i in r.get("DeviceIDs") or []]
    counts = [r.get("Count") or 0 for r in requests]
    gpu_variables = {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"} if requests else {}
    if ids or not requests:
        gpu_variables["NVIDIA_VISIBLE_DEVICES"] = ",".join(ids) or "void"
    for name, value in args["environment"].items():
        assert not name.upper().startswith("JUPYTERHUB_") and name != "JPY_API_TOKEN", name
        if guarded_variable(name) is not None:
            assert value in ((admin.get("environment") or {}).get(name), gpu_variables.get(name))
    assert set(ids) <= set(HOST_GPUS) and min(counts, default=0) >= 0
    assert len(ids) + sum(counts) <= (USER_RULES.max_gpus or 0)


def mostly(good: Any, *bad: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from([good] * 10 * len(bad) + list(bad))  # good 10 times in 11


ENTRY_MOUNTS = [*(BASE.docker_entry("cpu").get("mounts") or []), *USER_RULES.mounts]
HOSTILE_CONFIG: dict[str, list[Any]] = {
    "privileged": [True, False], "cap_add": [["SYS_ADMIN"]], "network_mode": ["bridge"],
    "user": ["0:0", "root", "65534:0", "0", "4321:27", "4321:4322"], "pid_mode": ["host"],
    "mounts": [["/:/host"], [f"{OUTSIDE}:/outside"], [f"{SHARED}:/shared"], ENTRY_MOUNTS,
               ENTRY_MOUNTS, [*ENTRY_MOUNTS, f"{SHARED}:/other"]],
    "environment": [{"NVIDIA_VISIBLE_DEVICES": "all"}, {"DOCKER_RESOURCE_NVIDIA-GPU": "0"},
                    {"LD_PRELOAD": "/x.so"}, {"JUPYTERHUB_API_TOKEN": "t"}, {"A": "b"},
                    {"nvidia_visible_devices": HOST_GPUS[1]}, {"ld_library_path": "/x"},
                    {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility,video"}],
    "gpus": ["all", "none", 1, 2, 8, [0], [0, 1], ["1"], [HOST_GPUS[3]], "GPU-", -1],
    "mem_limit": ["64g", "4g", "4g", "2g", None, 0], "cpus": [None, 64], "shm_size": [None, "8g"],
    "image": [*IMAGES.values(), "lab/unlisted:1", "ubuntu"], "cap_drop": [["ALL"], []],
    "environment_id": [*ENV_IDS.values(), "x"], "kernel_id": ["a" * 32], "devices": [["/dev/x"]],
}  # fmt: skip
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
config_items = st.sampled_from(sorted(HOSTILE_CONFIG)).flatmap(
    lambda key: st.tuples(st.just(key), st.sampled_from(HOSTILE_CONFIG[key]))
)
configs = st.builds(
    lambda gpus, items: {**gpus, **dict(items)},
    mostly({"gpus": 1}, {}),
    st.lists(config_items, max_size=2),
)
CWDS = [str(NOTEBOOKS / "project"), str(NOTEBOOKS / "escape"), "/", "/etc", "notebooks",
        f"{NOTEBOOKS}/../../..", str(OUTSIDE), str(HOME), "", None, 7, ["/"]]  # fmt: skip
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "kernel_id": mostly("0123ABCD-" + "0" * 8, "../x", 1, "a" * 7),
    "environment_id": mostly(ENV_IDS["torch"], ENV_IDS["secret"], ENV_IDS["found"], "", None)
    | mostly(ENV_IDS["cpu"], "docker-cpu"),
    "key": mostly("k" * 32, "short", None, 7),
    "signature_scheme": mostly("hmac-sha256", "hmac-md5", None),
    "cwd": st.sampled_from([str(NOTEBOOKS)] * 2 * len(CWDS) + CWDS),
    "config": st.one_of(*[configs] * 4, json_values),
    "session_name": st.none() | st.text(max_size=8),
    "env": mostly({}, {"LD_PRELOAD": "/x.so"}, "x", None),
    "transport_encryption": mostly("required", None, "auto", "disabled", "x"),
    "kernel_name": st.none() | st.text(max_size=8) | st.integers(),
}
REQUIRED = ("kernel_id", "environment_id", "key", "cwd", "config")  # None: missing
OPTIONAL = {k: FIELDS[k] for k in FIELDS if k not in REQUIRED}
bodies = st.builds(
    lambda body, unknown: {**body, **unknown},
    st.fixed_dictionaries({k: FIELDS[k] for k in REQUIRED}, optional=OPTIONAL),
    mostly({}, {"privileged": True}, {"user": "0:0"}, {"uid": 0}),
)


@settings(max_examples=300, deadline=None)
@given(body=bodies, host_known=st.booleans())
def test_no_start_body_gets_past_the_users_rules(body: dict[str, Any], host_known: bool) -> None:
    assert set(START_KEYS) == set(FIELDS)
    built = start_arguments(body, host_known)
    event("refused" if built is None else "let through")
    if built is not None:
        assert_within_rules(*built)


def test_a_body_without_cwd_mounts_nothing_outside_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a cwd the kernel gets the user's first notebook root, never the broker's own
    working folder (a Hub-managed service runs in the Hub's folder, often /srv/jupyterhub,
    which would have been mounted read-write as the kernel's working directory)."""
    monkeypatch.chdir(OUTSIDE)
    body = {"kernel_id": "a" * 32, "environment_id": ENV_IDS["cpu"], "key": "k" * 32}
    built = start_arguments(body, True)
    assert built is not None
    assert_within_rules(*built)


def test_an_ordinary_body_is_let_through() -> None:
    """The property is not vacuous: the start a user's server sends passes."""
    body = {"kernel_id": "0123abcd-" + "0" * 8, "environment_id": ENV_IDS["torch"],
            "key": "k" * 32, "signature_scheme": "hmac-sha256", "config": {"gpus": 1},
            "cwd": str(NOTEBOOKS / "project"), "transport_encryption": "required"}  # fmt: skip
    built = start_arguments(body, True)
    assert built is not None
    args, folder = built
    assert folder == os.path.realpath(NOTEBOOKS / "project")
    assert {m["Source"] for m in args["mounts"]} >= {str(CONNECTION), str(SHARED), folder}
    assert args["user"] == "4321:4322" and args["image"] == IMAGES["torch"]
    assert [r["DeviceIDs"] for r in args["device_requests"]] == [[HOST_GPUS[0]]]
    assert_within_rules(args, folder)
