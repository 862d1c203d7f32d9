"""What the server runs inside a warm kernel, silently, on its shell channel.

Two cells, never seen by the user: the preimport (at warm start) and the hand-out (the
move to the notebook's folder, just before the kernel is given to the notebook). Both run
with ``silent=True, store_history=False``: ipykernel then publishes no execute_input and
no result, IPython neither stores history nor advances the execution count, and no
pre/post-run-cell hooks fire. Their code runs in a namespace of its own, so not a name
reaches the user's namespace. Values are embedded as Python literals (``repr``) and
module names were validated by the config (dotted identifiers only).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..kernel_errors import KernelStartFailed

_ISOLATED = "exec(compile({source!r}, '<gpuenv-warm>', 'exec'), {{}})"

_PREIMPORT = """\
import importlib
for name in {modules!r}:
    importlib.import_module(name)
"""

_HANDOUT = """\
import os, sys
cwd, variables = {cwd!r}, {variables!r}
before = os.getcwd()
os.chdir(cwd)
sys.path[:] = [cwd if entry == before else entry for entry in sys.path]
os.environ.update(variables)
try:
    from IPython import get_ipython
    shell = get_ipython()
except ImportError:
    shell = None
if shell is not None:
    if isinstance(shell.user_ns.get('_dh'), list):
        shell.user_ns['_dh'][:] = [cwd]
    if 'JPY_SESSION_NAME' in variables:
        shell.user_ns['__session__'] = variables['JPY_SESSION_NAME']
"""


def preimport_code(modules: Sequence[str]) -> str:
    """Import ``modules`` (already validated names) without touching the user namespace."""
    return _ISOLATED.format(source=_PREIMPORT.format(modules=list(modules)))


def handout_code(cwd: str, variables: Mapping[str, str]) -> str:
    """Move the kernel to ``cwd`` and give it the notebook's own variables."""
    source = _HANDOUT.format(cwd=cwd, variables=dict(variables))
    return _ISOLATED.format(source=source)


async def run_silently(client: Any, code: str, timeout: float, what: str) -> None:
    """Execute ``code`` silently on ``client``'s shell channel; raise if it did not succeed.

    ``client`` is a started async KernelClient of the kernel. Replies to other requests
    (none are expected: nobody else talks to a warm kernel) are skipped.
    """
    msg_id = client.execute(code, silent=True, store_history=False, allow_stdin=False)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KernelStartFailed(f"Warm kernel: no reply to the {what} in {timeout:.0f} s.")
        try:
            reply = await client.get_shell_msg(timeout=remaining)
        except Exception as err:  # queue.Empty from jupyter_client on timeout
            raise KernelStartFailed(
                f"Warm kernel: no reply to the {what} in {timeout:.0f} s."
            ) from err
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        content = reply.get("content", {})
        if content.get("status") != "ok":
            error = f"{content.get('ename', 'error')}: {content.get('evalue', '')}".strip()
            raise KernelStartFailed(f"Warm kernel: the {what} failed ({error}).")
        return
