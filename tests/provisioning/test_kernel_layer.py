"""An image without ipykernel still gives a working kernel, through a derived layer.

The layer is built once (ipykernel wheels fetched on the host for the image's Python),
found again by the base image id, and the user's image is left exactly as it was.
"""

from __future__ import annotations

import json

import pytest

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.provisioning.container.kernel_layer import find_layer
from tests.provisioning.conftest import Collect, environment_named, kernel_containers
from tests.provisioning.kernel_ws import KernelSocket
from tests.support.server_config import server_config

pytestmark = pytest.mark.docker


@pytest.fixture
def jp_server_config(bare_python_image):
    return server_config(docker_images={"bare": bare_python_image})


def has_ipykernel(client, image: str) -> bool:
    output = client.containers.run(
        image,
        entrypoint=[
            "python3",
            "-c",
            "import importlib.util as u; print(u.find_spec('ipykernel') is not None)",
        ],
        remove=True,
        network_mode="none",
    )
    return output.decode().strip() == "True"


async def run_in_new_kernel(jp_fetch, jp_ws_fetch, kernel_name: str, code: str) -> str:
    # The first start builds the layer (pip download + docker build): allow for it.
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": kernel_name}), request_timeout=600
    )
    kernel_id = json.loads(response.body)["id"]
    ws = KernelSocket(await jp_ws_fetch("api", "kernels", kernel_id, "channels"))
    text = (await ws.run(code)).text
    ws.close()
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    return text


async def test_image_without_ipykernel_gets_a_kernel_layer(
    jp_fetch, jp_ws_fetch, jp_serverapp, docker_client, bare_python_image
):
    base = docker_client.images.get(bare_python_image)
    assert not has_ipykernel(docker_client, bare_python_image)
    # Start from scratch so the build itself is exercised (layers are ours to remove).
    old_layer = find_layer(docker_client, base.id)
    if old_layer:
        docker_client.images.remove(old_layer, force=True)

    env = await environment_named(jp_fetch, "bare")
    assert env["ipykernel"] is False
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert env["kernel_name"] in specs

    collect = Collect()
    jp_serverapp.log.addHandler(collect)
    try:
        code = "import sys, ipykernel; print(sys.executable, ipykernel.__version__)"
        text = await run_in_new_kernel(jp_fetch, jp_ws_fetch, env["kernel_name"], code)
        assert text.split()[0] == "/usr/bin/python3"
        assert any("has no ipykernel: building a kernel layer" in x for x in collect.lines), (
            collect.lines
        )
        assert any(
            x.startswith(f"Kernel layer for {bare_python_image}: Step")
            or f"Kernel layer for {bare_python_image} built in" in x
            for x in collect.lines
        )

        layer = find_layer(docker_client, base.id)
        assert layer is not None
        layer_labels = docker_client.images.get(layer).labels
        assert layer_labels[labels.LAYER_BASE_ID] == base.id
        assert layer_labels[labels.ROLE] == "kernel-layer"

        # The second kernel reuses the layer: no build, same image.
        collect.lines.clear()
        await run_in_new_kernel(jp_fetch, jp_ws_fetch, env["kernel_name"], "print(1)")
        assert not any("building a kernel layer" in x for x in collect.lines)
        assert find_layer(docker_client, base.id) == layer
    finally:
        jp_serverapp.log.removeHandler(collect)

    # The user's image is untouched.
    assert docker_client.images.get(bare_python_image).id == base.id
    assert not has_ipykernel(docker_client, bare_python_image)
    assert not kernel_containers(docker_client, **{labels.ENVIRONMENT_ID: env["id"]})
