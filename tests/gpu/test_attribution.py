"""PID -> container -> kernel, with real processes and real containers.

NVML is the fake (no GPU here); the PIDs it reports are real host PIDs: a process tree
started by the test, and the main process of a real container labelled like a kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.gpu.attribution import (
    DockerContainerLabels,
    KernelRecord,
    ProcessAttributor,
    container_id_from_cgroup,
    read_container_id,
    read_parent_pid,
)
from jupyter_gpuenv.kernel.gpu_snapshot import GpuProcess, GpuSnapshot
from jupyter_gpuenv.kernel.nvml import NvmlAdapter
from tests.support.fake_nvml import FakeGpu, FakeNvml, FakeProcess

CID = "8d3f0a1b2c" + "4e5f6a7b8c" * 5 + "9d0e"  # 64 hex characters
OUTER = "a" * 64

CGROUP_FILES = {
    "docker, cgroup v1, cgroupfs driver": (
        f"12:memory:/docker/{CID}\n11:cpu,cpuacct:/docker/{CID}\n0::/docker/{CID}\n"
    ),
    "docker, cgroup v2, systemd driver": f"0::/system.slice/docker-{CID}.scope\n",
    "docker, cgroup v1, systemd driver": (
        f"9:pids:/system.slice/docker-{CID}.scope\n1:name=systemd:/system.slice/docker-{CID}.scope"
    ),
    "kubernetes, containerd": (
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c.slice/"
        f"cri-containerd-{CID}.scope\n"
    ),
    "kubernetes, cgroupfs": f"4:memory:/kubepods/burstable/pod0a1b2c3d-1111-2222/{CID}\n",
    "podman": f"0::/machine.slice/libpod-{CID}.scope/container\n",
    "docker in docker": f"0::/docker/{OUTER}/docker/{CID}\n",
}


@pytest.mark.parametrize("text", CGROUP_FILES.values(), ids=list(CGROUP_FILES))
def test_container_id_from_cgroup(text: str) -> None:
    assert container_id_from_cgroup(text) == CID


@pytest.mark.parametrize(
    "text",
    [
        "0::/\n",
        "0::/user.slice/user-1000.slice/session-2.scope\n",
        "4:memory:/process_api/410198a9e747c3f43327331f8904b23e\n",  # 32 hex: not a container
        "0::/system.slice/docker.service\n",
    ],
)
def test_host_processes_have_no_container(text: str) -> None:
    assert container_id_from_cgroup(text) is None


@pytest.fixture
def process_tree() -> Iterator[tuple[int, int]]:
    """A real parent (standing in for a kernel) and its child (the GPU user)."""
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        yield parent.pid, child_pid
    finally:
        parent.kill()
        parent.wait()
        try:
            os.kill(child_pid, 9)
        except ProcessLookupError:
            pass


def sample(*pids: int) -> GpuSnapshot:
    return NvmlAdapter(FakeNvml([FakeGpu(processes=[FakeProcess(p) for p in pids])])).read()


def test_parent_pid_from_proc(process_tree: tuple[int, int]) -> None:
    parent, child = process_tree
    assert read_parent_pid(child) == parent
    assert read_parent_pid(parent) == os.getpid()
    assert read_container_id(child) is None


def test_local_kernel_owns_its_descendants(process_tree: tuple[int, int]) -> None:
    parent, child = process_tree
    snap = sample(child, parent)
    record = KernelRecord(
        "k-local", environment_id="conda-vision-1", pid=parent, notebook_path="a.ipynb"
    )
    ProcessAttributor(hub_user="").attribute(snap, [record])
    procs = {p.pid: p for p in snap.processes()}
    for pid in (child, parent):
        assert procs[pid].kernel_id == "k-local"
        assert procs[pid].environment_id == "conda-vision-1"
        assert procs[pid].notebook_path == "a.ipynb"
        assert procs[pid].own and procs[pid].container_id is None
        assert procs[pid].name and procs[pid].name.startswith("python")


def test_unrelated_and_vanished_processes_stay_unattributed(process_tree: tuple[int, int]) -> None:
    parent, child = process_tree
    vanished = 2**22 + 12345  # above pid_max's default: no such process
    snap = sample(os.getpid(), vanished)
    ProcessAttributor(hub_user="").attribute(snap, [KernelRecord("k", pid=parent)])
    mine, gone = sorted(snap.processes(), key=lambda p: p.pid != os.getpid())
    assert mine.kernel_id is None and mine.own  # same uid, outside JupyterHub
    assert gone.kernel_id is None and not gone.own and gone.name is None


def test_on_jupyterhub_uid_alone_does_not_make_a_process_yours() -> None:
    snap = sample(os.getpid())
    ProcessAttributor(hub_user="alice").attribute(snap, [])
    assert not snap.processes()[0].own


@pytest.fixture
def kernel_container(docker_client, python_kernel_image) -> Iterator[object]:
    """A real container labelled the way the Docker provisioner labels kernel containers."""
    container = docker_client.containers.run(
        python_kernel_image,
        ["python3", "-c", "import time; time.sleep(300)"],
        detach=True,
        name=f"gpuenv-test-gpu-attribution-{uuid.uuid4().hex[:8]}",
        labels={
            labels.KERNEL_ID: "k-in-container",
            labels.ENVIRONMENT_ID: "docker-torch-5a1b2c3d",
            labels.USER: "alice",
            labels.ROLE: "kernel",
        },
    )
    try:
        container.reload()
        yield container
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_container_process_attributed_through_its_labels(docker_client, kernel_container) -> None:
    host_pid = kernel_container.attrs["State"]["Pid"]
    assert host_pid > 0
    assert read_container_id(host_pid) == kernel_container.id
    snap = sample(host_pid)
    attributor = ProcessAttributor(
        container_labels=DockerContainerLabels(docker_client), hub_user="alice"
    )
    # The session table of this server knows the kernel's notebook.
    attributor.attribute(snap, [KernelRecord("k-in-container", notebook_path="nb/train.ipynb")])
    proc: GpuProcess = snap.processes()[0]
    assert proc.container_id == kernel_container.id
    assert proc.kernel_id == "k-in-container"
    assert proc.environment_id == "docker-torch-5a1b2c3d"
    assert proc.notebook_path == "nb/train.ipynb"
    assert proc.user == "alice" and proc.own
    assert proc.name == "python3"

    other_user = sample(host_pid)
    ProcessAttributor(
        container_labels=DockerContainerLabels(docker_client), hub_user="bob"
    ).attribute(other_user, [])
    assert other_user.processes()[0].kernel_id == "k-in-container"
    assert not other_user.processes()[0].own


@pytest.mark.docker
def test_provisioner_record_matches_an_abbreviated_container_id(kernel_container) -> None:
    host_pid = kernel_container.attrs["State"]["Pid"]
    snap = sample(host_pid)
    record = KernelRecord(
        "k-from-provisioner", environment_id="docker-x-1", container_id=kernel_container.id[:12]
    )
    ProcessAttributor(container_labels=None, hub_user="bob").attribute(snap, [record])
    proc = snap.processes()[0]
    assert (proc.kernel_id, proc.environment_id) == ("k-from-provisioner", "docker-x-1")
    assert proc.own  # this server's own kernel, whatever the labels say


@pytest.mark.docker
def test_label_lookup_of_a_removed_container_is_none(docker_client) -> None:
    lookup = DockerContainerLabels(docker_client)
    assert lookup("0" * 64) is None


def test_label_lookup_without_an_engine_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    lookup = DockerContainerLabels()
    assert lookup(CID) is None
    assert lookup(CID) is None  # answered from the back-off, no second attempt
