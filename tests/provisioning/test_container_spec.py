"""What a kernel container is created with, decided as plain data before Docker is asked."""

from __future__ import annotations

import os

import pytest
from docker.types import DeviceRequest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.docker.nvidia_runtime import GpuRuntime
from jupyter_gpuenv.doctor.docker_gpus import gpu_problem
from jupyter_gpuenv.gpu_set import GpuSet
from jupyter_gpuenv.provisioning.container.gpu_request import plan_gpus
from jupyter_gpuenv.provisioning.container.orphans import ServerInstance
from jupyter_gpuenv.provisioning.container.request import (
    CONNECTION_FILE_IN_CONTAINER,
    WRITABLE_CONNECTION_FILE,
    WRITABLE_RUN_IN_CONTAINER,
    ContainerRequest,
    allowance_for,
    container_name,
    container_user,
    create_arguments,
    parse_mount,
    resource_limits,
    working_dir,
)
from jupyter_gpuenv.provisioning.kernel_errors import KernelStartFailed
from jupyter_gpuenv.provisioning.policy.kernel_user import KernelUser
from jupyter_gpuenv.provisioning.policy.launch_gate import check_create_arguments

NVIDIA = GpuRuntime("nvidia", "test host with the toolkit")
CDI = GpuRuntime("cdi", "test host with CDI specs")
NONE = GpuRuntime(None, "no toolkit")
MIG = "MIG-4a7c1a0e-0b55-5d11-9a8f-0e7f3b2c1d00"


def test_container_names_are_sanitised():
    assert container_name("docker-torch-1a2b3c4d", "0123456789abcdef") == (
        "gpuenv-docker-torch-1a2b3c4d-01234567"
    )
    assert container_name("weird/name:tag", "abc") == "gpuenv-weird-name-tag-abc"


def test_user_is_the_server_user_or_a_confined_root(tmp_path):
    """A root server's kernels run as the notebook folder's owner, else as a confined uid 0."""
    me = KernelUser(os.getuid(), os.getgid())
    if os.getuid() != 0:
        assert container_user(str(tmp_path), allow_root=False) == (me, False)
        return
    os.chown(tmp_path, 4321, 4322)
    assert container_user(str(tmp_path), allow_root=False) == (KernelUser(4321, 4322), False)
    os.chown(tmp_path, 0, 0)
    for allow_root in (False, True):
        assert container_user(str(tmp_path), allow_root) == (KernelUser(0, 0), False)
    assert container_user(None, False, requested="1000:100") == (KernelUser(1000, 100), False)
    assert container_user(None, True, requested="0:0") == (KernelUser(0, 0), True)


def test_a_root_servers_own_kernel_drops_every_capability(tmp_path):
    args = create_arguments(request(tmp_path, settings={"cap_drop": ["NET_RAW"]}))
    assert args["security_opt"] == ["no-new-privileges"]
    if os.getuid() == 0 and os.stat(tmp_path).st_uid == 0:
        assert args["user"] == "0:0"
        assert args["cap_drop"] == ["ALL"]
    granted = create_arguments(request(tmp_path, settings={"user": "0:0"}, allow_root=True))
    assert granted["user"] == "0:0" and "cap_drop" not in granted


def test_mount_forms(tmp_path):
    ro = parse_mount(f"{tmp_path}:/data:ro")
    assert (ro["Source"], ro["Target"], ro["ReadOnly"]) == (str(tmp_path), "/data", True)
    rw = parse_mount({"source": str(tmp_path), "target": "/scratch"})
    assert rw["ReadOnly"] is False
    with pytest.raises(KernelStartFailed, match="does not exist"):
        parse_mount(f"{tmp_path}/missing:/data")
    with pytest.raises(KernelStartFailed, match="absolute"):
        parse_mount(f"{tmp_path}:relative")
    with pytest.raises(KernelStartFailed, match="host_path:container_path"):
        parse_mount(f"{tmp_path}:/x:rx")


def test_limits():
    assert resource_limits({"mem_limit": "8g", "cpus": 2.5, "shm_size": "2g"}) == {
        "mem_limit": "8g",
        "nano_cpus": 2_500_000_000,
        "shm_size": "2g",
    }
    with pytest.raises(KernelStartFailed, match="cpus must be a number"):
        resource_limits({"cpus": "lots"})


def test_system_folders_are_never_the_working_dir(tmp_path):
    assert working_dir("/") is None and working_dir("/usr") is None
    assert working_dir(str(tmp_path)) == str(tmp_path)


def request(tmp_path, **overrides) -> ContainerRequest:
    connection = tmp_path / "kernel.json"
    connection.write_text("{}")
    values = dict(
        kernel_id="k" * 32,
        environment_id="docker-plain-12345678",
        image="sha256:abc",
        python="/usr/bin/python3",
        connection_file=str(connection),
        cwd=str(tmp_path),
        settings={},
        instance=ServerInstance("sid", 123, "host", "99"),
        server_env={"LANG": "C.UTF-8", "JUPYTERHUB_API_TOKEN": "secret", "TOKEN": "x"},
        env_allowlist=["LANG", "NOT_SET"],
    )
    values.update(overrides)
    return ContainerRequest(**values)


def test_create_arguments(tmp_path):
    args = create_arguments(request(tmp_path, settings={"environment": {"A": 1}}))
    assert args["network_mode"] == "host" and args["init"] is True
    assert args["entrypoint"] == ["/usr/bin/python3"]
    assert args["command"][:4] == ["-m", "ipykernel_launcher", "-f", CONNECTION_FILE_IN_CONTAINER]
    assert "--IPKernelApp.extra_extensions=jupyter_gpuenv_kernel" in args["command"]
    env = args["environment"]
    assert env["LANG"] == "C.UTF-8" and env["A"] == "1"
    assert "JUPYTERHUB_API_TOKEN" not in env and "TOKEN" not in env
    assert env["JUPYTER_GPUENV_KERNEL_SIDE"] == "/opt/jupyter-gpuenv"
    assert args["labels"][labels.KERNEL_ID] == "k" * 32
    assert args["labels"][labels.SERVER_ID] == "sid"
    assert args["labels"][labels.ROLE] == "kernel"
    targets = {m["Target"]: m for m in args["mounts"]}
    assert targets[CONNECTION_FILE_IN_CONTAINER]["ReadOnly"] is True
    assert targets["/opt/jupyter-gpuenv/jupyter_gpuenv_kernel"]["ReadOnly"] is True
    assert targets[str(tmp_path)]["ReadOnly"] is False
    assert args["working_dir"] == str(tmp_path)


def test_a_curve_kernel_starts_from_a_private_writable_copy(tmp_path):
    """The read-only mount stays; ipykernel reads a copy on a tmpfs of its own uid."""
    plain = create_arguments(request(tmp_path))
    assert WRITABLE_RUN_IN_CONTAINER not in (plain.get("tmpfs") or {})
    req = request(tmp_path, curve=True)
    args = create_arguments(req)
    assert args["entrypoint"] == ["/usr/bin/python3"]
    copy_step = ["-m", "jupyter_gpuenv_kernel.connection_copy"]
    assert args["command"][:6] == [
        *copy_step,
        CONNECTION_FILE_IN_CONTAINER,
        WRITABLE_CONNECTION_FILE,
        "--",
        "/usr/bin/python3",
    ]
    assert args["command"][6:10] == ["-m", "ipykernel_launcher", "-f", WRITABLE_CONNECTION_FILE]
    targets = {m["Target"]: m for m in args["mounts"]}
    assert targets[CONNECTION_FILE_IN_CONTAINER]["ReadOnly"] is True
    uid, gid = args["user"].split(":")
    options = args["tmpfs"][WRITABLE_RUN_IN_CONTAINER].split(",")
    assert {"mode=0700", f"uid={uid}", f"gid={gid}", "noexec", "nosuid", "nodev"} <= set(options)
    check_create_arguments(args, allowance_for(req, GpuSet.none()))


def test_conda_env_inside_an_image_is_activated(tmp_path):
    args = create_arguments(
        request(
            tmp_path,
            python="/opt/conda/envs/vision/bin/python",
            conda_prefix_in_image="/opt/conda/envs/vision",
            image_env=["PATH=/usr/bin:/bin"],
        )
    )
    assert args["entrypoint"] == ["/bin/sh"]
    assert args["command"][2:4] == ["gpuenv-activate", "/opt/conda/envs/vision/bin/python"]
    env = args["environment"]
    assert env["CONDA_PREFIX"] == "/opt/conda/envs/vision"
    assert env["PATH"] == "/opt/conda/envs/vision/bin:/usr/bin:/bin"


def test_gpu_plans():
    plan = plan_gpus(GpuSet.parse("all"), NVIDIA)
    (req,) = plan.device_requests
    assert req == DeviceRequest(count=-1, capabilities=[["gpu"]])
    assert plan.environment == {
        "NVIDIA_VISIBLE_DEVICES": "all",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    }
    plan = plan_gpus(GpuSet.parse(["0", MIG]), NVIDIA)
    assert plan.device_requests[0]["DeviceIDs"] == ["0", MIG]
    assert plan.environment["NVIDIA_VISIBLE_DEVICES"] == f"0,{MIG}"
    cdi = plan_gpus(GpuSet.parse(["1"]), CDI)
    assert cdi.device_requests[0]["DeviceIDs"] == ["nvidia.com/gpu=1"]
    none = plan_gpus(GpuSet.parse("none"), NVIDIA)
    assert none.device_requests == [] and none.environment["NVIDIA_VISIBLE_DEVICES"] == "void"
    without = plan_gpus(GpuSet.parse("all"), NONE)
    assert without.device_requests == [] and "without GPUs" in without.notes[0]
    with pytest.raises(KernelStartFailed, match="GPUs 0 are configured"):
        plan_gpus(GpuSet.parse(["0"]), NONE)


def test_catalog_problem_lines():
    assert gpu_problem(GpuSet.parse("all"), NVIDIA) is None
    assert gpu_problem(GpuSet.parse("none"), NONE) is None
    assert "start without GPUs" in gpu_problem(GpuSet.parse("all"), NONE)
    assert "cannot start" in gpu_problem(GpuSet.parse(["0"]), NONE)
