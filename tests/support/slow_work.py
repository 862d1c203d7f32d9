"""Work that takes a while on purpose, so that its progress can be watched.

``slow_venv``: a real venv whose ``bin/python`` sleeps (or waits for a file) before it
runs the venv's own interpreter, so probing it takes that long. ``fresh_image``: a copy
of a test image under a new image id (one more label), so a kernel layer is really built
for it and nothing of another test's is reused or removed.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.provisioning.container.kernel_layer import find_layer
from tests.support.venvs import make_venv


def slow_venv(path: Path, seconds: float = 0, gate: Path | None = None) -> Path:
    """A venv with ipykernel whose ``bin/python`` first sleeps ``seconds``, or waits until
    the file ``gate`` exists (the test says when the probe may end)."""
    make_venv(path)
    python = path / "bin" / "python"
    python.unlink()
    wait = f"sleep {seconds}"
    if gate is not None:
        wait = f"while [ ! -e '{gate}' ]; do sleep 0.2; done"
    python.write_text(f'#!/bin/sh\n{wait}\nexec "$(dirname "$0")/python3" "$@"\n')
    python.chmod(0o755)
    return path


@contextmanager
def fresh_image(client: docker.DockerClient, base: str, name: str) -> Iterator[str]:
    """``base`` under a new image id, tagged ``gpuenv-test-fresh/<name>:<random>``; it and
    any kernel layer built from it are removed afterwards."""
    tag = f"gpuenv-test-fresh/{name}:{uuid.uuid4().hex[:12]}"
    dockerfile = f"FROM {base}\nLABEL org.jupyter.gpuenv.test.fresh={tag}\n"
    # rm/forcerm: the LABEL step's intermediate container goes too (docker-py keeps it).
    image, _ = client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, pull=False, rm=True, forcerm=True
    )
    try:
        yield tag
    finally:
        layer = find_layer(client, image.id)
        if layer:
            client.images.remove(layer, force=True)
        for found in client.images.list(filters={"label": f"{labels.LAYER_BASE_ID}={image.id}"}):
            client.images.remove(found.id, force=True)
        client.images.remove(image.id, force=True)
