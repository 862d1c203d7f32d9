"""A start cancelled while Docker creates the container leaves no container behind.

A kernel start is a task; its client may go away (or the server stop) while a Docker
call runs in a thread, which cancelling cannot stop. Cancelled at the moment the
container is being created, the start still leaves nothing: what the thread then
creates is removed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager

from jupyter_gpuenv.docker import labels
from jupyter_gpuenv.provisioning import start_progress
from tests.provisioning.conftest import kernel_containers
from tests.support.reattach import first_manager

pytestmark = [pytest.mark.docker]


def container_events(client: Any, kernel_id: str, since: int, seconds: int = 15) -> list[str]:
    """What happened to the kernel's containers from ``since`` until ``seconds`` later."""
    events = client.events(
        since=since,
        until=since + seconds,
        decode=True,
        filters={"type": "container", "label": f"{labels.KERNEL_ID}={kernel_id}"},
    )
    return [str(event.get("Action") or event.get("status")) for event in events]


async def test_a_start_cancelled_during_the_create_leaves_no_container(
    python_kernel_image: str, docker_client: Any, tmp_path: Path
) -> None:
    settings = {"docker_images": {"py": {"image": python_kernel_image, "gpus": "none"}}}
    first, services, _ = await first_manager(settings, tmp_path / "cache.json", "py")
    try:
        for _ in range(2):
            km = AsyncKernelManager(
                kernel_name=first.kernel_name,
                kernel_spec_manager=first.kernel_spec_manager,
                config=first.config,
            )
            kernel_id = str(uuid.uuid4())
            starting = asyncio.ensure_future(
                km.start_kernel(kernel_id=kernel_id, cwd=str(tmp_path))
            )
            while True:  # until the start asks Docker for the container
                found = start_progress.starts(kernel_id=kernel_id)
                if found and found[-1].steps and found[-1].steps[-1].key == "container":
                    break
                assert not starting.done(), starting.exception()
                await asyncio.sleep(0)
            since = int(time.time()) - 1
            starting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starting
            # The thread goes on: Docker's events say whether it created the container,
            # and the container must be destroyed after.
            actions = await asyncio.to_thread(container_events, docker_client, kernel_id, since)
            if "create" in actions:
                assert "destroy" in actions[actions.index("create") :], actions
            assert not kernel_containers(docker_client, **{labels.KERNEL_ID: kernel_id})
    finally:
        services.stop()
