"""Run code in a real kernel and collect what it printed and displayed (GPU and magic tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outputs:
    """A cell's outputs by kind: stream text, rich ``data`` bundles, errors."""

    text: str = ""
    data: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def plain(self) -> str:
        """Everything a person would read as text: streams and text/plain bundles."""
        return self.text + "".join(d.get("text/plain", "") for d in self.data)

    def add(self, msg: dict[str, Any]) -> None:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            self.text += content["text"]
        elif kind in ("display_data", "execute_result"):
            self.data.append(content["data"])
        elif kind == "error":
            self.errors.append("\n".join(content["traceback"]))


async def run_cell(client: Any, code: str, timeout: float = 120) -> Outputs:
    """Execute ``code`` through an async kernel client; fail on an error reply."""
    outputs = Outputs()
    reply = await client.execute_interactive(code, output_hook=outputs.add, timeout=timeout)
    status = reply["content"]["status"]
    assert status == "ok", f"cell failed ({status}): {outputs.errors or reply['content']}"
    return outputs


def child_pids(pid: int) -> list[int]:
    """Direct children of a host process, from /proc (no ps needed)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []
