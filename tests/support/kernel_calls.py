"""Run code in a kernel from its connection info, as any Jupyter client would."""

from __future__ import annotations

from typing import Any

from jupyter_client.blocking import BlockingKernelClient


def run_code(connection: dict[str, Any], code: str, timeout: float = 60) -> str:
    """``code``'s stream output; the cell must succeed."""
    client = BlockingKernelClient()
    client.load_connection_info(connection)
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = client.execute_interactive(code, timeout=timeout, output_hook=hook)
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        client.stop_channels()
