"""Swarm mode through a real ``jupyter server``: kernels as services on a 3-node swarm.

Kernels get distinct GPUs and spread over the nodes, run code on their node (the GPU ids
Swarm assigned are in their environment), are interrupted across hosts, wait for a GPU
when none is free, restart into a new service, and leave no service or secret behind,
also when their server is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import uuid

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.provisioning.container.swarm.engine_privileges import (
    gives_no_new_privileges,
)
from jupyter_gpuenv.provisioning.container.swarm.swarm_service import assigned_gpus
from tests.provisioning.server_process import ServerProcess, make_shared_dir
from tests.support.swarm import GPU_ENV, GPU_KIND, OLD_ENGINE_OPT_OUT, SwarmCluster
from tests.support.waits import eventually

pytestmark = [pytest.mark.swarm, pytest.mark.docker]

NOTEBOOK_UID = NOTEBOOK_GID = 4242


@pytest.fixture
def notebook_dir():
    path = make_shared_dir("gpuenv-swarm-nb-", NOTEBOOK_UID, NOTEBOOK_GID)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def swarm_settings(swarm: SwarmCluster, image: str, **extra) -> dict:
    return {
        "scheduler": "swarm",
        "docker_host": swarm.manager_url,
        "docker_images": {"py": {"image": image, "gpus": 1}},
        **OLD_ENGINE_OPT_OUT,
        **extra,
    }


def kernel_services(swarm: SwarmCluster, **match: str) -> list[dict]:
    filters = [f"{labels.ROLE}=kernel"] + [f"{k}={v}" for k, v in match.items()]
    return swarm.manager.api.services(filters={"label": filters})


def server_secrets(swarm: SwarmCluster, server: ServerProcess) -> list[dict]:
    secrets = swarm.manager.api.secrets(filters={"label": labels.SERVER_PID})
    return [
        s for s in secrets if s["Spec"]["Labels"].get(labels.SERVER_PID) == str(server.proc.pid)
    ]


async def kernel_name_of(server: ServerProcess, name: str) -> str:
    code, listing = await server.request("GET", "/gpuenv/api/environments")
    assert code == 200, listing
    (env,) = [e for e in listing["environments"] if e["name"] == name]
    return env["kernel_name"]


async def start_kernel(server: ServerProcess, kernel_name: str) -> tuple[int, dict]:
    """Start a kernel the way the Lab does: a notebook session in the notebook folder."""
    body = {
        "path": f"nb-{uuid.uuid4().hex[:8]}.ipynb",
        "type": "notebook",
        "kernel": {"name": kernel_name},
    }
    code, session = await server.request("POST", "/api/sessions", body)
    return code, (session["kernel"] if code == 201 else session)


def placement(swarm: SwarmCluster, kernel_id: str) -> tuple[str, list[str], dict]:
    """(node name, GPU ids, service) of the kernel's running service."""
    (service,) = kernel_services(swarm, **{labels.KERNEL_ID: kernel_id})
    task = swarm.wait_for_task(service["ID"], "running")
    return swarm.node(task["NodeID"]).name, assigned_gpus(task, GPU_KIND), service


async def test_kernels_on_the_swarm_get_distinct_gpus_wait_interrupt_restart_and_go(
    swarm: SwarmCluster, python_kernel_image, notebook_dir, server_processes
):
    server = server_processes(notebook_dir, swarm_settings(swarm, python_kernel_image), uid=0)
    kernel_name = await kernel_name_of(server, "py")

    kernels = []
    for _ in range(len(swarm.gpus)):
        code, kernel = await start_kernel(server, kernel_name)
        assert code == 201, kernel
        kernels.append(kernel["id"])
    placements = {k: placement(swarm, k) for k in kernels}
    granted = [gpu for _, gpus, _ in placements.values() for gpu in gpus]
    assert sorted(granted) == sorted(swarm.gpus), placements
    for node, gpus, _ in placements.values():
        assert [swarm.gpus[g] for g in gpus] == [node]
    assert {node for node, _, _ in placements.values()} == {"n1", "n2", "n3"}

    # The connection info (key, CurveZMQ keys) is a secret, nowhere in the service spec.
    worker_kernel = next(k for k, p in placements.items() if p[0] != "n1")
    node, gpus, service = placements[worker_kernel]
    spec_text = json.dumps(service["Spec"])
    assert len(server_secrets(swarm, server)) == len(kernels)
    assert "curve_secretkey" not in spec_text and '"key"' not in spec_text
    container = service["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert container["User"] == f"{NOTEBOOK_UID}:{NOTEBOOK_GID}"
    assert container["Dir"] == str(notebook_dir)
    assert container["CapabilityDrop"] == ["ALL"]
    # No-new-privileges where the manager's API keeps it (this swarm's allows old engines).
    keeps = gives_no_new_privileges(swarm.manager.api.api_version)
    assert (container.get("Privileges") or {}).get("NoNewPrivileges", False) is keeps

    ws = await server.channels(worker_kernel)
    await ws.ready()
    result = await ws.run(
        "import os, socket\n"
        f"print(os.environ[{GPU_ENV!r}], socket.gethostname(), os.getuid(), os.getcwd())\n"
        "open('from-swarm.txt', 'w').write('hi')\n"
        "wanted = ('CapBnd:', 'NoNewPrivs:')\n"
        "print(*[l.split()[1] for l in open('/proc/self/status') if l.startswith(wanted)])\n"
    )
    seen_gpu, hostname, uid, cwd, bounding, no_new = result.text.split()[:6]
    assert int(bounding, 16) == 0, "no capability left to gain on the node"
    assert no_new == ("1" if keeps else "0"), "no-new-privileges as the engine allows"
    assert seen_gpu == ",".join(gpus)
    assert hostname == swarm.node(node).hostname
    assert (int(uid), cwd) == (NOTEBOOK_UID, str(notebook_dir))
    assert (notebook_dir / "from-swarm.txt").read_text() == "hi"

    # Which GPUs each kernel got: in REST, and in the kernel's %gpuinfo.
    code, cluster = await server.request("GET", "/gpuenv/api/cluster/kernels")
    assert code == 200 and cluster["scheduler"] == "swarm", cluster
    listed = {k["kernel_id"]: (k["node"], k["gpus"], k["node_addr"]) for k in cluster["kernels"]}
    assert listed == {
        k: (swarm.node(n).hostname, g, swarm.node(n).ip) for k, (n, g, _) in placements.items()
    }
    code, own = await server.request("GET", f"/gpuenv/api/kernels/{worker_kernel}")
    assert code == 200, own
    assert own["placement"] == {
        "service": service["Spec"]["Name"],
        "node": swarm.node(node).hostname,
        "node_addr": swarm.node(node).ip,
        "gpus": gpus,
    }
    assert own["service"] == service["Spec"]["Name"]
    code, gpus_body = await server.request("GET", "/gpuenv/api/gpus")
    assert code == 200 and gpus_body["cluster"] == cluster, gpus_body
    result = await ws.run(
        "import json\ninfo = %gpuinfo --json\nprint(json.dumps(info['scheduled_gpus']))"
    )
    assert json.loads(result.text) == {GPU_KIND: ",".join(gpus)}

    # Interrupt across hosts: the sleeping cell ends long before its 60 s.
    msg_id = ws.send("import time\ntime.sleep(60)")
    await ws.wait_busy(msg_id)
    code, _ = await server.request("POST", f"/api/kernels/{worker_kernel}/interrupt")
    assert code == 204
    assert (await ws.collect(msg_id, timeout=30)).error == "KeyboardInterrupt"
    assert (await ws.run("print('alive')")).text.strip() == "alive"
    ws.close()

    # Every GPU is taken: a fifth start waits, and gets the GPU freed by a shutdown.
    waiting = asyncio.ensure_future(start_kernel(server, kernel_name))

    def pending_for_gpu() -> bool:
        mine = [
            s
            for s in kernel_services(swarm)
            if s["ID"] not in {p[2]["ID"] for p in placements.values()}
        ]
        if not mine:
            return False
        task = swarm.latest_task(mine[0]["ID"])
        return bool(task) and "insufficient resources" in task["Status"].get("Err", "")

    await eventually(pending_for_gpu, 60, "the fifth kernel's task pending for a GPU")
    await asyncio.sleep(2)
    assert not waiting.done()
    # What the Lab's start notice shows while it waits.
    code, progress = await server.request("GET", "/gpuenv/api/progress")
    assert code == 200, progress
    (waiting_start,) = [s for s in progress["starts"] if s["state"] == "starting"]
    current = waiting_start["steps"][-1]
    assert current["waiting_for"] == "gpu", waiting_start
    assert current["message"] == "waiting for a free GPU (no node has 1 free NVIDIA-GPU)"
    freed_kernel = next(k for k in kernels if k != worker_kernel)
    kernels.remove(freed_kernel)
    freed_node, freed_gpus, _ = placements.pop(freed_kernel)
    code, _ = await server.request("DELETE", f"/api/kernels/{freed_kernel}")
    assert code == 204
    code, fifth = await asyncio.wait_for(waiting, 120)
    assert code == 201, fifth
    kernels.append(fifth["id"])
    assert placement(swarm, fifth["id"])[:2] == (freed_node, freed_gpus)
    assert "waiting for a free GPU (no node has 1 free NVIDIA-GPU)" in server.log_text()

    # Restart: a new service, the old one and its secret gone.
    old_service = placements[worker_kernel][2]["ID"]
    code, _ = await server.request("POST", f"/api/kernels/{worker_kernel}/restart")
    assert code == 200
    _, _, new_service = placement(swarm, worker_kernel)
    assert new_service["ID"] != old_service
    ws = await server.channels(worker_kernel)
    await ws.ready()
    assert (await ws.run("print('x' in globals())")).text.strip() == "False"
    ws.close()
    assert len(server_secrets(swarm, server)) == len(kernels)

    # Shutdown: nothing of any kernel left on the swarm.
    for kernel_id in kernels:
        code, _ = await server.request("DELETE", f"/api/kernels/{kernel_id}")
        assert code == 204
    await eventually(lambda: not kernel_services(swarm), 30, "every kernel service removed")
    await eventually(lambda: not server_secrets(swarm, server), 30, "every secret removed")


async def test_an_engine_older_than_25_refuses_the_start_and_leaves_nothing(
    swarm: SwarmCluster, python_kernel_image, notebook_dir, server_processes
):
    """The default (no opt-out) on this swarm's 20.10 engine: no service, no secret, and a
    message naming the manager's engine, the one needed and the setting that allows it."""
    api_version = swarm.manager.api.api_version
    if gives_no_new_privileges(api_version):
        pytest.skip(f"the swarm's engine (API {api_version}) gives services no-new-privileges")
    settings = swarm_settings(swarm, python_kernel_image, swarm_allow_old_engine=False)
    server = server_processes(notebook_dir, settings, uid=0)
    kernel_name = await kernel_name_of(server, "py")
    code, body = await server.request("POST", "/api/kernels", {"name": kernel_name})
    assert code == 403, body
    message = body["message"]
    engine = swarm.manager.version()["Version"]
    assert f"the Swarm manager runs Docker Engine {engine} (API {api_version})" in message
    assert "Docker Engine 25.0 (API 1.44)" in message, message
    assert "c.GpuEnv.swarm_allow_old_engine = True" in message, message
    assert kernel_services(swarm) == []
    assert server_secrets(swarm, server) == []
    assert swarm.manager.api.secrets(filters={"label": labels.KERNEL_ID}) == []


async def test_gpu_wait_times_out_and_all_or_ids_are_refused(
    swarm: SwarmCluster, python_kernel_image, notebook_dir, server_processes
):
    images = {
        "three": {"image": python_kernel_image, "gpus": 3},
        "every": {"image": python_kernel_image, "gpus": "all"},
        "named": {"image": python_kernel_image, "gpus": ["GPU-swarm-n1-0"]},
    }
    server = server_processes(
        notebook_dir,
        swarm_settings(swarm, python_kernel_image, docker_images=images, gpu_wait_timeout=3),
        uid=0,
    )
    code, body = await start_kernel(server, await kernel_name_of(server, "three"))
    assert code == 500, body
    assert (
        "No node had 3 free NVIDIA-GPU within 3 s (c.GpuEnv.gpu_wait_timeout)" in (body["message"])
    )
    assert not kernel_services(swarm)
    assert not server_secrets(swarm, server)
    for name, word in (("every", 'gpus="all"'), ("named", "names particular GPUs")):
        code, body = await start_kernel(server, await kernel_name_of(server, name))
        assert code == 500 and word in body["message"], body
        assert "swarm mode" in body["message"]
    assert not kernel_services(swarm)


async def test_services_of_a_killed_server_are_swept(
    swarm: SwarmCluster, python_kernel_image, notebook_dir, server_processes
):
    settings = swarm_settings(swarm, python_kernel_image)
    first = server_processes(notebook_dir, settings, uid=0)
    code, kernel = await start_kernel(first, await kernel_name_of(first, "py"))
    assert code == 201, kernel
    assert len(kernel_services(swarm, **{labels.KERNEL_ID: kernel["id"]})) == 1
    first.kill9()
    assert kernel_services(swarm, **{labels.KERNEL_ID: kernel["id"]})
    second = server_processes(notebook_dir, settings, uid=0)
    await eventually(
        lambda: not kernel_services(swarm, **{labels.KERNEL_ID: kernel["id"]}),
        60,
        "the killed server's kernel service swept",
    )
    await eventually(lambda: not server_secrets(swarm, first), 60, "its secret swept")
    assert "Removed kernel service" in second.log_text()


async def test_drained_node_and_image_missing_on_a_node(
    swarm: SwarmCluster, python_kernel_image, notebook_dir, server_processes
):
    only_on_n1 = f"gpuenv-test/swarm-kernel-only-on-n1:{uuid.uuid4().hex[:8]}"
    n1 = swarm.node("n1")
    # An image of its own (not just a tag): built on n1 only, from the kernel image.
    dockerfile = f"FROM {python_kernel_image}\nLABEL only-on=n1-{only_on_n1}\n"
    n1.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=only_on_n1, rm=True)
    try:
        images = {
            "py": {"image": python_kernel_image, "gpus": 1},
            "lonely": {"image": only_on_n1, "gpus": 0},
        }
        server = server_processes(
            notebook_dir,
            swarm_settings(swarm, python_kernel_image, docker_images=images),
            uid=0,
        )
        swarm.drain("n1")
        kernel_name = await kernel_name_of(server, "py")
        started = []
        for _ in range(2):
            code, kernel = await start_kernel(server, kernel_name)
            assert code == 201, kernel
            started.append(kernel["id"])
        assert sorted(placement(swarm, k)[0] for k in started) == ["n2", "n3"]

        code, body = await start_kernel(server, await kernel_name_of(server, "lonely"))
        assert code == 500, body
        assert "No such image" in body["message"], body
        assert f"{only_on_n1} is not on node" in body["message"], body
        assert "docker load" in body["message"], body
        assert len(kernel_services(swarm)) == 2
    finally:
        n1.client.images.remove(only_on_n1)


# A plain jupyter_client program (no server): starts a swarm kernel, exits without
# shutting it down.
PLAIN_CLIENT = """
import asyncio, json, pathlib, sys
from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config
from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.provisioning.kernelspecs import GpuEnvKernelSpecManager
from jupyter_gpuenv.services import Services

config = Config({"GpuEnv": json.loads(sys.argv[1])})
ksm = GpuEnvKernelSpecManager(config=config)
services = Services.build(GpuEnv(config=config), cache_path=pathlib.Path(sys.argv[3], "cache.json"))
ksm.use_services(services)
(env,) = services.catalog.list_environments_sync()
km = AsyncKernelManager(kernel_name=env.kernel_name, kernel_spec_manager=ksm, config=config)
asyncio.run(km.start_kernel(cwd=sys.argv[2]))
print("STARTED", km.kernel_id, flush=True)
"""


def test_a_plain_client_that_exits_leaves_no_service(
    swarm: SwarmCluster, python_kernel_image, notebook_dir, tmp_path
):
    settings = {
        **swarm_settings(swarm, python_kernel_image),
        "conda_envs_dirs": [],
        "venv_dirs": [],
        "docker_label_discovery": False,
    }
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PLAIN_CLIENT,
            json.dumps(settings),
            str(notebook_dir),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    kernel_id = out.stdout.split("STARTED", 1)[1].split()[0]
    assert not kernel_services(swarm, **{labels.KERNEL_ID: kernel_id})
    secrets = swarm.manager.api.secrets(filters={"label": f"{labels.KERNEL_ID}={kernel_id}"})
    assert secrets == []
