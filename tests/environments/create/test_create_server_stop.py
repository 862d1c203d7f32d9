"""A server stopped while a create runs cancels it first: the pip it waits on is stopped
and the half-made environment removed before the server exits (a real ``jupyter server``
process, stopped with SIGTERM as a service manager would)."""

from __future__ import annotations

import asyncio
import subprocess

import yaml

from tests.provisioning.server_process import start_server

JOBS = "/gpuenv/api/environments/jobs"


async def test_sigterm_cancels_a_running_create_and_leaves_nothing(
    create_setup, stalled_index
) -> None:
    server = start_server(create_setup.root, create_setup.traits)
    try:
        pip = ["--no-index", f"--find-links {stalled_index.url}", "gpuenv-not-in-any-index"]
        data = {
            "name": "halfway",
            "channels": [create_setup.channel_url],
            "dependencies": ["python", "pip", {"pip": pip}],
        }
        code, job = await server.request(
            "POST", "/gpuenv/api/environments", {"yaml": yaml.safe_dump(data)}
        )
        assert code == 202, job
        for _ in range(600):  # until pip waits on the index
            if stalled_index.taken:
                break
            code, current = await server.request("GET", f"{JOBS}/{job['id']}")
            assert current["state"] == "running", current
            await asyncio.sleep(0.1)
        assert stalled_index.taken
        assert (create_setup.envs / "halfway").is_dir()  # made by rattler, pip under way

        server.proc.terminate()
        await asyncio.to_thread(server.proc.wait, 60)
        assert server.proc.returncode == 0, server.log_text()
        assert stalled_index.closed_by_pip(10)
        assert create_setup.leftovers() == []
        orphans = subprocess.run(
            ["pgrep", "-f", "gpuenv-not-in-any-index|gpuenv-pip-"], capture_output=True
        )
        assert orphans.returncode == 1, orphans.stdout
    finally:
        server.stop()
