"""Talk to a kernel the way JupyterLab does: jupyter_server's REST API and its websocket.

Works with pytest-jupyter's ``jp_ws_fetch`` connections and with a websocket opened to a
``jupyter server`` process started by the tests (server_process.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

SESSION = uuid.uuid4().hex


@dataclass
class CellResult:
    """What one execute_request produced."""

    status: str = ""
    text: str = ""
    error: str | None = None
    saw_busy: bool = False
    results: list[str] = field(default_factory=list)


def execute_message(code: str) -> dict[str, Any]:
    msg_id = uuid.uuid4().hex
    return {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": SESSION,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        },
        "channel": "shell",
        "buffers": [],
    }


class KernelSocket:
    """An open ``/api/kernels/<id>/channels`` websocket."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def send(self, code: str) -> str:
        msg = execute_message(code)
        self.conn.write_message(json.dumps(msg))
        return msg["header"]["msg_id"]

    async def collect(self, msg_id: str, timeout: float = 120.0) -> CellResult:
        """Outputs of ``msg_id`` until both its reply and its idle status arrived."""
        result = CellResult()
        replied = idle = False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply to {msg_id} within {timeout} s: {result}")
            raw = await asyncio.wait_for(self.conn.read_message(), remaining)
            if raw is None:
                raise ConnectionError(f"websocket closed while waiting for {msg_id}: {result}")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                result.text += content["text"]
            elif kind == "execute_result":
                result.results.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                result.error = content["ename"]
            elif kind == "status":
                if content["execution_state"] == "busy":
                    result.saw_busy = True
                idle = content["execution_state"] == "idle"
            elif kind == "execute_reply":
                result.status = content["status"]
                replied = True
        return result

    async def wait_busy(self, msg_id: str, timeout: float = 60.0) -> None:
        """Until the kernel started running ``msg_id`` (its execute_input arrived)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{msg_id} did not start within {timeout} s")
            raw = await asyncio.wait_for(self.conn.read_message(), remaining)
            if raw is None:
                raise ConnectionError("websocket closed")
            msg = json.loads(raw)
            if (
                msg.get("parent_header", {}).get("msg_id") == msg_id
                and msg["header"]["msg_type"] == "execute_input"
            ):
                return

    async def run(self, code: str, timeout: float = 120.0) -> CellResult:
        """Execute ``code`` and insist it succeeded."""
        result = await self.collect(self.send(code), timeout)
        assert result.status == "ok", f"cell failed: {result}\n{code}"
        return result

    async def ready(self, timeout: float = 120.0) -> None:
        """Until the kernel answers (a fresh or restarted kernel may still be starting)."""
        await self.run("pass", timeout)

    def close(self) -> None:
        self.conn.close()
