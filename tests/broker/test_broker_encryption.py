"""The broker's fail-closed check that a connection it hands out encrypts its kernel.

No start path of this broker produces a keyless connection while ``require_encryption``
is on (it asks for "required", and this host's pyzmq does CurveZMQ), so the check is
tested on the connection info of real jupyter_client KernelManagers, as the broker's
start passes it (``handed_out``): one whose keys were never made, as on a host whose
jupyter_client or libzmq cannot do CurveZMQ, and ones whose keys a start lost or mixed
up. A real encrypted kernel started by the broker: tests/broker/test_kernel_broker.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.manager import KernelManager

from jupyter_gpuenv.broker.encryption import curve_problem, handed_out


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[KernelManager]:
    """A kernel manager holding connection info only, as the broker's start makes it."""
    km = KernelManager(
        kernel_name="gpuenv-broker",
        ip="127.0.0.1",
        transport="tcp",
        connection_file=str(tmp_path / "kernel-test.json"),
    )
    km.write_connection_file()
    yield km
    km.cleanup_connection_file()


def connection_of(km: KernelManager) -> dict[str, Any]:
    return handed_out(km.get_connection_info())


def test_a_connection_without_keys_is_refused(manager: KernelManager) -> None:
    """What a jupyter_client or libzmq without CurveZMQ hands out: no keys at all."""
    connection = connection_of(manager)
    assert "curve_secretkey" not in connection and connection["shell_port"]
    assert curve_problem(connection) == (
        "its connection has no curve_publickey and no curve_secretkey"
    )


def test_a_connection_with_a_key_pair_passes(manager: KernelManager) -> None:
    manager.curve_publickey, manager.curve_secretkey = zmq.curve_keypair()
    connection = connection_of(manager)
    assert isinstance(connection["curve_secretkey"], str)  # as JSON carries it
    assert curve_problem(connection) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"curve_publickey": None}, "no curve_publickey"),
        ({"curve_publickey": ""}, "no curve_publickey"),
        ({"curve_publickey": "PAIR-OF-ANOTHER"}, "does not belong to its secret key"),
        ({"curve_secretkey": "x" * 12}, "not Z85 keys of 40 characters"),
        ({"curve_secretkey": '"' * 40}, "secret key is not usable"),
    ],
)
def test_keys_that_do_not_encrypt_are_refused(
    manager: KernelManager, change: dict[str, Any], why: str
) -> None:
    """A secret key alone, or a public key of another pair: the server's client would
    talk to the kernel in the clear, or not at all."""
    manager.curve_publickey, manager.curve_secretkey = zmq.curve_keypair()
    connection = connection_of(manager)
    other, _ = zmq.curve_keypair()
    for name, value in change.items():
        connection[name] = other.decode() if value == "PAIR-OF-ANOTHER" else value
    problem = curve_problem(connection)
    assert problem is not None and why in problem, problem
