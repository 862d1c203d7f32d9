"""``jupyter console --kernel=<name>`` driven through a pipe, in a Docker env kernel."""

from __future__ import annotations

import pytest

from tests.clients.conftest import containers_of, unique_name

SESSION = """\
import os, torch
print("torch-version:", torch.__version__, os.environ["JUPYTER_GPUENV_ENVIRONMENT_ID"])
exit
"""


@pytest.mark.docker
def test_jupyter_console_runs_code_in_the_torch_image(
    docker_client, torch_cpu_image, jupyter_setup
):
    setup = jupyter_setup(docker_images={unique_name("clients-console"): torch_cpu_image})
    name, env_id = setup.kernel_of_kind("docker")

    out = setup.run(
        "jupyter",
        "console",
        f"--kernel={name}",
        "--simple-prompt",
        "--ZMQTerminalInteractiveShell.kernel_timeout=300",
        stdin=SESSION,
    )

    assert f"torch-version: 2.13.0+cpu {env_id}" in out, out
    assert containers_of(docker_client, env_id) == []
