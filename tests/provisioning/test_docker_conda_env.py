"""The two-layer setup: one image holding several conda envs, one kernel per env.

A small image is derived from the python-kernel test image with a conda-style env under
/opt/conda/envs/vision (its own activate.d script); the kernel must run that env's python
with the env activated inside the container.
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from jupyter_gpuenv.docker import labels
from tests.provisioning.conftest import environment_named, kernel_containers
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.server_config import server_config

pytestmark = pytest.mark.docker

DOCKERFILE = """\
FROM {base}
RUN mkdir -p /opt/conda/envs/vision/bin /opt/conda/envs/vision/etc/conda/activate.d \
    /opt/conda/envs/vision/conda-meta \
 && ln -s /usr/bin/python3 /opt/conda/envs/vision/bin/python \
 && echo 'export VISION_TOOLKIT="$CONDA_PREFIX/toolkit"' \
    > /opt/conda/envs/vision/etc/conda/activate.d/toolkit.sh
"""


@pytest.fixture(scope="module")
def conda_env_image(docker_client, python_kernel_image):
    base_id = docker_client.images.get(python_kernel_image).id
    tag = f"gpuenv-test/conda-in-image:{base_id.split(':')[-1][:12]}"
    dockerfile = DOCKERFILE.format(base=python_kernel_image).encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    docker_client.images.build(fileobj=context, custom_context=True, tag=tag, pull=False, rm=True)
    return tag


@pytest.fixture
def jp_server_config(conda_env_image):
    return server_config(
        docker_images={
            "vision-in-image": {"image": conda_env_image, "conda_env": "vision"},
        }
    )


async def test_conda_env_inside_an_image_runs_activated(jp_fetch, jp_ws_fetch, docker_client):
    env = await environment_named(jp_fetch, "vision-in-image")
    assert env["python_executable"] == "/opt/conda/envs/vision/bin/python"
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": env["kernel_name"]})
    )
    kernel_id = json.loads(response.body)["id"]
    ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
    result = await ws.run(
        "import os, sys\n"
        "print(sys.executable)\n"
        "print(os.environ['CONDA_PREFIX'], os.environ['CONDA_DEFAULT_ENV'])\n"
        "print(os.environ['VISION_TOOLKIT'], os.environ['PATH'].split(':')[0])\n"
    )
    executable, (prefix, name), (toolkit, path0) = (
        result.text.splitlines()[0],
        *(line.split() for line in result.text.splitlines()[1:]),
    )
    assert executable == "/opt/conda/envs/vision/bin/python"
    assert (prefix, name) == ("/opt/conda/envs/vision", "vision")
    assert toolkit == "/opt/conda/envs/vision/toolkit"
    assert path0 == "/opt/conda/envs/vision/bin"

    # Interrupt still reaches python through the activation shell (it execs python).
    msg_id = ws.send("import time\ntime.sleep(60)")
    await ws.wait_busy(msg_id)
    await jp_fetch("api", "kernels", kernel_id, "interrupt", method="POST", body="")
    assert (await ws.collect(msg_id, timeout=30)).error == "KeyboardInterrupt"
    ws.close()
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
