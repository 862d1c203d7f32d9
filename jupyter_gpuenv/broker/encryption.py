"""Whether a connection the broker hands out really encrypts its kernel's channels.

Kernels listen on the host network, where every account can connect. With
``c.GpuEnvBroker.require_encryption`` a start is answered only with a connection that
holds a CurveZMQ key pair: a jupyter_client or libzmq without CurveZMQ, or a start path
that dropped the keys, would otherwise hand out a kernel whose output any account reads.
The check is on the connection itself, whatever produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zmq

Z85_KEY_LENGTH = 40
KEY_NAMES = ("curve_publickey", "curve_secretkey")


def handed_out(info: Any) -> dict[str, Any]:
    """The kernel's connection info as the start's answer carries it (text keys)."""
    connection: dict[str, Any] = dict(info)
    for name in ("key", "curve_publickey", "curve_secretkey"):
        value = connection.get(name)
        if isinstance(value, bytes):
            connection[name] = value.decode()
    return connection


def curve_problem(connection: Mapping[str, Any]) -> str | None:
    """Why ``connection`` would not be encrypted; None when it holds a CurveZMQ key pair."""
    public, secret = connection.get("curve_publickey"), connection.get("curve_secretkey")
    missing = [name for name in KEY_NAMES if not connection.get(name)]
    if missing:
        return f"its connection has no {' and no '.join(missing)}"
    if not zmq.has("curve"):
        return "this broker's libzmq cannot do CurveZMQ"
    public_key, secret_key = _key(public), _key(secret)
    if public_key is None or secret_key is None:
        return "its CurveZMQ keys are not Z85 keys of 40 characters"
    try:
        derived = zmq.curve_public(secret_key)
    except (zmq.ZMQError, ValueError) as err:
        return f"its CurveZMQ secret key is not usable ({err})"
    if derived != public_key:
        return "its CurveZMQ public key does not belong to its secret key"
    return None


def _key(value: object) -> bytes | None:
    raw = value.encode("ascii", "replace") if isinstance(value, str) else value
    if not isinstance(raw, bytes) or len(raw) != Z85_KEY_LENGTH:
        return None
    return raw
