"""Interrupting a running cell through a kernel manager, as a server's interrupt does."""

from __future__ import annotations

import asyncio

from jupyter_client.manager import AsyncKernelManager

LONG_CELL = "import time\nfor _ in range(1200):\n    time.sleep(0.1)\n"


async def run_until_interrupted(km: AsyncKernelManager) -> dict:
    """Run a long cell, interrupt it through the kernel manager; the cell's reply."""
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        msg_id = client.execute(LONG_CELL)
        while True:  # the cell runs: its busy status is on IOPub
            msg = await client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
                break
        await asyncio.sleep(0.5)
        await km.interrupt_kernel()
        while True:
            reply = await client.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                return dict(reply["content"])
    finally:
        client.stop_channels()
