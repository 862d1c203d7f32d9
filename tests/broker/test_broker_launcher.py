"""The argv launcher run by a hostile Hub user, on a Hub where the broker alone reaches
Docker.

Alice is a real account without Docker access. She writes her own kernelspecs in
~/.local/share/jupyter/kernels whose argv is the gpuenv launcher (``python -m
jupyter_gpuenv.launch``) and whose provisioner config (and ``env``) ask for what her
rules do not allow, and runs them as a client that ignores kernel provisioners does
(VS Code's local kernels): a connection file of her own, the spec's argv with the spec's
env, from a terminal of her server (``GPUENV_BROKER_URL``, her Hub token). Each start is
refused with the reason on stderr and exit status 1, and no container is created, not
even for a moment (the engine's events say so).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import docker
import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.environments.model import environment_id
from tests.broker.conftest import ALICE, BOB
from tests.broker.hub_broker import BrokerHub
from tests.broker.user_calls import broker_environments, user_containers

pytestmark = [pytest.mark.hub, pytest.mark.docker, pytest.mark.timeout(900)]

# Run as the user: what a plain client does with a kernelspec (VS Code's local kernels).
PLAIN_CLIENT = """
import json, os, subprocess, sys, uuid
from jupyter_client.connect import write_connection_file
spec = json.load(open(sys.argv[1]))
connection_file = os.path.join(os.environ["HOME"], f"kernel-{uuid.uuid4().hex[:8]}.json")
write_connection_file(connection_file, ip="127.0.0.1", key=uuid.uuid4().hex.encode())
argv = [a.replace("{connection_file}", connection_file) for a in spec["argv"]]
done = subprocess.run(argv, env={**os.environ, **spec["env"]}, capture_output=True,
                      text=True, timeout=300)
os.unlink(connection_file)
print(json.dumps({"status": done.returncode, "stderr": done.stderr}))
"""


def launcher_argv(environment_id: str) -> list[str]:
    """What ``jupyter gpuenv kernelspecs install`` writes as a spec's argv."""
    return [sys.executable, "-m", "jupyter_gpuenv.launch", "--environment", environment_id,
            "-f", "{connection_file}"]  # fmt: skip


def terminal_env(hub: BrokerHub, name: str) -> dict[str, str]:
    """The variables a terminal of the user's server has (the spawner's and the Hub's)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(hub.home(name)),
        "USER": name,
        "GPUENV_BROKER_URL": hub.broker_url,
        "JUPYTERHUB_API_TOKEN": hub.tokens[name],
        "JUPYTERHUB_USER": name,
        "JUPYTER_CONFIG_PATH": str(hub.root / "etc"),
    }


def run_as_plain_client(
    hub: BrokerHub, name: str, spec_path: str, cwd: str | None = None
) -> dict[str, Any]:
    command = [sys.executable, "-c", PLAIN_CLIENT, spec_path]
    if cwd is not None:
        command = ["sh", "-c", f'cd "{cwd}" && exec "$@"', "plain-client", *command]
    done = hub.run_as(name, command, env=terminal_env(hub, name))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def created_containers(client: docker.DockerClient, name: str, since: float) -> list[str]:
    """Containers of ``name`` the engine created since ``since`` (even if removed since)."""
    events = client.events(
        since=int(since),
        until=int(time.time()) + 1,
        filters={"type": "container", "event": "create", "label": f"{labels.USER}={name}"},
        decode=True,
    )
    return [str(e.get("id")) for e in events if int(e.get("timeNano", 0)) >= since * 1e9]


HOSTILE: list[tuple[str, dict[str, Any], dict[str, str], str | None]] = [
    ("ld-preload", {"environment": {"LD_PRELOAD": "/tmp/evil.so"}}, {}, None),
    ("swarm-gpus", {"environment": {"DOCKER_RESOURCE_NVIDIA-GPU": "all"}}, {}, None),
    ("etc", {"mounts": ["/etc:/host-etc"]}, {}, None),
    ("bobs-home", {"mounts": ["{bob}:/bob"]}, {}, None),
    ("root", {"user": "0:0"}, {}, None),
    ("image", {"image": "someone/else:latest"}, {}, None),
    ("spec-env", {}, {"NVIDIA_VISIBLE_DEVICES": "all", "DOCKER_RESOURCE_NVIDIA-GPU": "all"}, None),
    ("cwd-etc", {}, {}, "/etc"),  # the launcher's folder is the one a Docker kernel mounts
]


def nothing_created(hub: BrokerHub, client: docker.DockerClient, since: float) -> None:
    assert created_containers(client, ALICE, since) == []
    assert user_containers(client, ALICE) == []
    kernels = hub.broker("GET", "api/kernels", hub.tokens[ALICE]).json()
    assert kernels == {"kernels": []}, kernels


@pytest.mark.parametrize(
    ("label", "config", "env", "cwd"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_a_hostile_kernelspec_run_by_a_plain_client_is_refused_creating_nothing(
    broker_hub: BrokerHub,
    docker_client: docker.DockerClient,
    label: str,
    config: dict[str, Any],
    env: dict[str, str],
    cwd: str | None,
) -> None:
    """The launcher cannot give a brokered kernel the client's ports: it refuses before
    the broker is asked, whatever the spec says (its provisioner config never reaches
    the launcher, README: "Settings added by hand")."""
    environment_id = broker_environments(broker_hub, ALICE)["python"]["id"]
    asked = json.loads(json.dumps(config).replace("{bob}", str(broker_hub.home(BOB))))
    spec = broker_hub.write_kernelspec_as(
        ALICE,
        f"hostile-{label}",
        {"environment_id": environment_id, **asked},
        argv=launcher_argv(environment_id),
        env=env,
    )
    since = time.time()
    outcome = run_as_plain_client(broker_hub, ALICE, spec, cwd)
    assert outcome["status"] == 1, outcome
    stderr = outcome["stderr"]
    assert stderr.startswith("The kernel could not start: python (docker)"), stderr
    assert "is run by the kernel broker (c.GpuEnv.broker_url)" in stderr, stderr
    assert "Existing Jupyter Server" in stderr and stderr.count("\n") == 1, stderr
    nothing_created(broker_hub, docker_client, since)


OWN_CONFIG = """# Alice's own config, read by her launcher
c.GpuEnv.broker_url = ""
c.GpuEnv.restrict_to_configured_images = False
c.GpuEnv.docker_allow_root = True
c.GpuEnv.docker_images = {{"mine": {{
    "image": {image!r}, "gpus": "all", "mounts": ["/etc:/host-etc"],
    "environment": {{"LD_PRELOAD": "/tmp/evil.so", "DOCKER_RESOURCE_NVIDIA-GPU": "all"}},
}}}}
"""


def test_a_user_config_that_drops_the_broker_reaches_no_docker(
    broker_hub: BrokerHub, docker_client: docker.DockerClient, python_kernel_image: str
) -> None:
    """Her own config files (the launcher reads c.GpuEnv as a server would) turn broker
    mode off and configure an image as root with /etc: the launcher then talks to
    Docker as her, and the socket refuses."""
    folder = broker_hub.home(ALICE) / ".jupyter-own"
    done = broker_hub.run_as(
        ALICE,
        ["sh", "-c", f'mkdir -p "{folder}" && cat > "{folder}/jupyter_server_config.py"'],
        input=OWN_CONFIG.format(image=python_kernel_image),
    )
    assert done.returncode == 0, done.stderr
    mine = environment_id("docker", "mine", "mine")
    spec = broker_hub.write_kernelspec_as(
        ALICE,
        "hostile-own-config",
        {"environment_id": mine, "user": "0:0"},
        argv=launcher_argv(mine),
        env={"GPUENV_BROKER_URL": "", "JUPYTER_CONFIG_DIR": str(folder)},
    )
    since = time.time()
    try:
        outcome = run_as_plain_client(broker_hub, ALICE, spec)
    finally:
        broker_hub.run_as(ALICE, ["rm", "-r", str(folder)])
    assert outcome["status"] == 1, outcome
    stderr = outcome["stderr"]
    refusal = [line for line in stderr.splitlines() if line.startswith("The kernel could not")]
    assert len(refusal) == 1, stderr
    assert "Docker daemon is not reachable" in refusal[0], stderr
    assert "Permission denied" in refusal[0], stderr
    nothing_created(broker_hub, docker_client, since)
