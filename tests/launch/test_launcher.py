"""On-disk gpuenv kernelspecs run from their argv, without the provisioner, as VS Code does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

import docker.errors
import pytest

from jupyter_gpuenv.docker import labels
from tests.clients.conftest import containers_of, unique_name
from tests.launch.conftest import interrupt_running_cell, spawn_argv, start_from_argv

WHERE = """\
import json, os, sys
info = {"dockerenv": os.path.exists("/.dockerenv"), "prefix": sys.prefix,
        "env": os.environ.get("JUPYTER_GPUENV_ENVIRONMENT_ID"),
        "conda_prefix": os.environ.get("CONDA_PREFIX"), "cuda_home": os.environ.get("CUDA_HOME"),
        "pid": os.getpid(), "uid": os.getuid(), "cwd": os.getcwd(),
        "pid1": open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode()}
try:
    import torch
    info["torch"] = torch.__version__
except ImportError:
    info["torch"] = None
print(json.dumps(info))
"""

ACTIVATE_SCRIPTS = {"10-cuda.sh": 'export CUDA_HOME="$CONDA_PREFIX/cuda"\n'}


def being_started(client, environment_id: str) -> bool:
    """Whether a container of the environment exists (it may vanish while we look)."""
    filters = {"label": f"{labels.ENVIRONMENT_ID}={environment_id}"}
    return bool(client.containers.list(all=True, filters=filters, ignore_removed=True))


def where(kernel) -> dict:
    reply, printed = kernel.run(WHERE)
    assert reply["status"] == "ok", reply
    return json.loads(printed.strip().splitlines()[-1])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not pid_alive(pid)


def test_the_argv_is_the_launcher_of_this_python(jupyter_setup, tmp_path, venv_factory):
    venv = venv_factory(tmp_path / "venvs" / "tools")
    setup = jupyter_setup(venv_dirs=[str(venv.parent)])
    name, env_id = setup.kernel_of_kind("venv")
    spec = setup.kernels[name]
    # The interpreter of the `jupyter gpuenv` that wrote it: this Python.
    assert os.path.samefile(spec["argv"][0], sys.executable)
    assert spec["argv"][1:] == [
        "-m",
        "jupyter_gpuenv.launch",
        "--environment",
        env_id,
        "-f",
        "{connection_file}",
    ]
    assert spec["interrupt_mode"] == "signal"


@pytest.mark.docker
def test_docker_kernel_from_argv_runs_interrupts_and_leaves_nothing(
    docker_client, torch_cpu_image, jupyter_setup
):
    setup = jupyter_setup(docker_images={unique_name("launch-torch"): torch_cpu_image})
    name, env_id = setup.kernel_of_kind("docker")
    uid = os.getuid()
    if uid == 0:
        # As with a server running as root: the kernel runs as the notebook folder's owner.
        uid = 4321
        os.chown(setup.root, uid, uid)
        # The folder is resolved as its owner would: open pytest's 0700 folders above it.
        for folder in setup.root.parents:
            if str(folder) in ("/", "/tmp"):
                break
            folder.chmod(folder.stat().st_mode | 0o011)
    kernel = start_from_argv(setup, name)
    try:
        info = where(kernel)
        # The image's torch, in a container whose PID 1 is docker-init (the host has neither).
        assert info["torch"] == "2.13.0+cpu" and info["dockerenv"], info
        assert info["pid1"].endswith("docker-init"), info
        assert info["env"] == env_id
        assert info["uid"] == uid and info["cwd"] == str(setup.root), info
        (container,) = containers_of(docker_client, env_id)
        # The launcher is the container's owner, as a server is for its kernels.
        assert container.labels[labels.SERVER_PID] == str(kernel.process.pid)

        reply = interrupt_running_cell(kernel)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        assert kernel.run("print(6 * 7)")[1].strip() == "42"

        kernel.client.shutdown()
        assert kernel.wait_exit() == 0, kernel.log()
        assert containers_of(docker_client, env_id) == []
    finally:
        kernel.close()


@pytest.mark.docker
def test_a_killed_launcher_container_is_removed_by_the_next_start(
    docker_client, python_kernel_image, jupyter_setup
):
    setup = jupyter_setup(docker_images={unique_name("launch-kill"): python_kernel_image})
    name, env_id = setup.kernel_of_kind("docker")
    first = start_from_argv(setup, name)
    try:
        (left,) = containers_of(docker_client, env_id)
        first.signal(signal.SIGKILL)
        first.wait_exit()
    finally:
        first.close()

    second = start_from_argv(setup, name)
    try:
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(left.id)
        (container,) = containers_of(docker_client, env_id)
        assert container.labels[labels.SERVER_PID] == str(second.process.pid)
        # SIGTERM (how clients stop a kernel process) shuts it down and removes it.
        second.signal(signal.SIGTERM)
        assert second.wait_exit() == 0, second.log()
        assert containers_of(docker_client, env_id) == []
    finally:
        second.close()


@pytest.mark.docker
def test_sighup_to_a_docker_launcher_removes_its_container(
    docker_client, python_kernel_image, jupyter_setup
):
    setup = jupyter_setup(docker_images={unique_name("launch-hup"): python_kernel_image})
    name, env_id = setup.kernel_of_kind("docker")
    kernel = start_from_argv(setup, name)
    try:
        assert where(kernel)["dockerenv"]
        (container,) = containers_of(docker_client, env_id)
        # A closed terminal or session: a shutdown, as SIGTERM is.
        kernel.signal(signal.SIGHUP)
        assert kernel.wait_exit() == 0, kernel.log()
        assert containers_of(docker_client, env_id) == []
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(container.id)
    finally:
        kernel.close()


@pytest.mark.docker
def test_a_missing_image_fails_with_the_reason_and_leaves_nothing(docker_client, jupyter_setup):
    image = f"gpuenv-launch-absent-{unique_name('img')}:1"
    setup = jupyter_setup(docker_images={unique_name("launch-absent"): image})
    name, env_id = setup.kernel_of_kind("docker")
    process, _, log_file = spawn_argv(setup, name)
    assert process.wait(timeout=120) == 1
    out = log_file.read_text()
    assert f"Image {image} is not present locally" in out, out
    assert f"docker pull {image}" in out and "Traceback" not in out, out
    assert containers_of(docker_client, env_id) == []


@pytest.mark.docker
def test_a_docker_kernel_speaks_curve_when_the_client_file_holds_keys(
    docker_client, python_kernel_image, jupyter_setup
):
    setup = jupyter_setup(docker_images={unique_name("launch-curve"): python_kernel_image})
    name, env_id = setup.kernel_of_kind("docker")
    kernel = start_from_argv(setup, name, curve=True)
    try:
        reply, printed = kernel.run(ENCRYPTED)
        assert reply["status"] == "ok" and printed.strip() == "True", (reply, printed)
        (container,) = containers_of(docker_client, env_id)
        secret = kernel.client.get_connection_info()["curve_secretkey"]
        secret = secret.decode() if isinstance(secret, bytes) else secret
        assert secret not in json.dumps(container.attrs), "the key leaked into the container"
        kernel.signal(signal.SIGTERM)
        assert kernel.wait_exit() == 0, kernel.log()
    finally:
        kernel.close()
    assert containers_of(docker_client, env_id) == []


def test_conda_kernel_from_argv_is_activated_interrupts_and_stops(
    tmp_path, conda_prefix_factory, jupyter_setup
):
    prefix = conda_prefix_factory(tmp_path / "envs" / "vision", activate_scripts=ACTIVATE_SCRIPTS)
    setup = jupyter_setup(conda_envs_dirs=[str(prefix.parent)])
    name, env_id = setup.kernel_of_kind("conda")
    kernel = start_from_argv(setup, name)
    try:
        info = where(kernel)
        assert os.path.realpath(info["prefix"]) == os.path.realpath(prefix), info
        assert info["conda_prefix"] == info["prefix"] and info["torch"] is None, info
        assert info["cuda_home"] == f"{info['prefix']}/cuda", info
        assert info["env"] == env_id

        reply = interrupt_running_cell(kernel)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        assert kernel.run("print(6 * 7)")[1].strip() == "42"

        # SIGHUP (a closed terminal or session) is a shutdown as SIGTERM is.
        kernel.signal(signal.SIGHUP)
        assert kernel.wait_exit() == 0, kernel.log()
        assert wait_gone(info["pid"])
    finally:
        kernel.close()


def test_a_venv_kernel_exits_when_its_launcher_is_killed(tmp_path, venv_factory, jupyter_setup):
    venv = venv_factory(tmp_path / "venvs" / "tools")
    setup = jupyter_setup(venv_dirs=[str(venv.parent)])
    name, _ = setup.kernel_of_kind("venv")
    kernel = start_from_argv(setup, name)
    try:
        info = where(kernel)
        assert os.path.realpath(info["prefix"]) == os.path.realpath(venv), info
        assert pid_alive(info["pid"])
        kernel.signal(signal.SIGKILL)
        kernel.wait_exit()
        # ipykernel sees its parent (the launcher) gone and exits.
        assert wait_gone(info["pid"])
    finally:
        kernel.close()


@pytest.mark.docker
def test_sigterm_while_the_container_starts_leaves_nothing(
    docker_client, python_kernel_image, jupyter_setup
):
    setup = jupyter_setup(docker_images={unique_name("launch-early"): python_kernel_image})
    name, env_id = setup.kernel_of_kind("docker")
    process, _, log_file = spawn_argv(setup, name)
    try:
        deadline = time.monotonic() + 120
        while not being_started(docker_client, env_id) and time.monotonic() < deadline:
            assert process.poll() is None, log_file.read_text()
            time.sleep(0.05)
        assert being_started(docker_client, env_id), log_file.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, log_file.read_text()
        assert containers_of(docker_client, env_id) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_removed_venv_fails_with_the_reason(tmp_path, venv_factory, jupyter_setup):
    venv = venv_factory(tmp_path / "venvs" / "tools")
    setup = jupyter_setup(venv_dirs=[str(venv.parent)])
    name, env_id = setup.kernel_of_kind("venv")
    shutil.rmtree(venv)
    process, _, log_file = spawn_argv(setup, name)
    assert process.wait(timeout=120) == 1
    out = log_file.read_text()
    assert out.startswith("The kernel could not start: ") and "Traceback" not in out, out
    assert str(venv) in out or env_id in out, out


ENCRYPTED = """\
from ipykernel.kernelapp import IPKernelApp
print(bool(IPKernelApp.instance().shell_socket.curve_server))
"""


@pytest.mark.parametrize("curve", [False, True], ids=["plain", "curve"])
def test_the_kernel_uses_the_client_connection_file_as_written(
    tmp_path, venv_factory, jupyter_setup, curve
):
    venv = venv_factory(tmp_path / "venvs" / "tools")
    setup = jupyter_setup(venv_dirs=[str(venv.parent)])
    name, _ = setup.kernel_of_kind("venv")
    kernel = start_from_argv(setup, name, curve=curve)
    try:
        # What the client read from the file it wrote, before the launcher started.
        written = kernel.client.get_connection_info()
        written["key"] = written["key"].decode()
        # Curve exactly when the client's file holds keys: the kernel's shell socket is a
        # CurveZMQ server then, and a plain one otherwise.
        reply, printed = kernel.run(ENCRYPTED)
        assert reply["status"] == "ok" and printed.strip() == str(curve), (reply, printed)
        # The file is the client's: same ports, key, transport, ip (and keys) after the start.
        after = json.loads(kernel.connection_file.read_text())
        if not curve:
            # ipykernel itself writes a file holding keys anew (same values, new inode),
            # so the file's identity says something only without them.
            stat = kernel.connection_file.stat()
            assert (stat.st_dev, stat.st_ino) == kernel.file_identity, "the file was replaced"
        assert {k: after.get(k) for k in written} == written
        assert (written.get("curve_secretkey") is not None) == curve
        kernel.signal(signal.SIGTERM)
        assert kernel.wait_exit() == 0, kernel.log()
        assert kernel.connection_file.exists()
    finally:
        kernel.close()


def test_an_invalid_setting_is_logged_and_the_kernel_still_starts(
    tmp_path, venv_factory, jupyter_setup
):
    venv = venv_factory(tmp_path / "venvs" / "tools")
    setup = jupyter_setup(venv_dirs=[str(venv.parent)], probe_timeout="soon")
    name, _ = setup.kernel_of_kind("venv")
    kernel = start_from_argv(setup, name)
    try:
        reply, printed = kernel.run("print(6 * 7)")
        assert reply["status"] == "ok" and printed.strip() == "42", (reply, printed)
        assert "probe_timeout" in kernel.log() and "'soon'" in kernel.log(), kernel.log()
        kernel.signal(signal.SIGTERM)
        assert kernel.wait_exit() == 0, kernel.log()
    finally:
        kernel.close()
