"""Fixtures for cluster-mode tests: a multi-node Docker Swarm on this machine.

``swarm_cluster`` is built once per session and shared: three nodes in network namespaces,
fake GPUs as Swarm generic resources (n1, the manager: GPU-swarm-n1-0 and -1; n2:
GPU-swarm-n2-0; n3: GPU-swarm-n3-0), the python-kernel test image on every node. Tests take
``swarm`` instead, which is the same cluster with no services and every node active, before
and after the test. ``swarm_cluster_factory`` builds clusters of other layouts (see
tests/support/swarm.py) and closes them at the end of the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import docker
import pytest

from tests.support.docker_engine import running_in_ci
from tests.support.swarm import (
    REPORT,
    NodeSpec,
    SwarmCluster,
    SwarmUnavailable,
    check_prerequisites,
    gpu_layout,
    start_swarm_cluster,
)

SwarmFactory = Callable[..., SwarmCluster]


def _unavailable(exc: SwarmUnavailable) -> None:
    if running_in_ci():
        pytest.fail(f"CI must run the swarm tests, but this machine cannot: {exc}")
    pytest.skip(f"this machine cannot run a Docker Swarm of namespaces: {exc}")


@pytest.fixture(scope="session")
def swarm_machine(docker_client: docker.DockerClient) -> docker.DockerClient:
    """The host's engine, once this machine is known to be able to run the harness.

    Skips where it cannot (not root, no iproute2/iptables and no apt-get to install
    them); with ``CI=true`` that is a failure.
    """
    try:
        check_prerequisites()
    except SwarmUnavailable as exc:
        _unavailable(exc)
    return docker_client


@pytest.fixture(scope="session")
def swarm_cluster_factory(swarm_machine: docker.DockerClient) -> Iterator[SwarmFactory]:
    """``factory(layout=None, images=()) -> SwarmCluster``, closed at the end of the session.

    ``layout``: NodeSpecs, e.g. ``gpu_layout(1, 0)``; ``images``: host image tags to have
    on every node.
    """
    clusters: list[SwarmCluster] = []

    def factory(
        layout: Sequence[NodeSpec] | None = None, images: Sequence[str] = ()
    ) -> SwarmCluster:
        try:
            cluster = start_swarm_cluster(layout, swarm_machine, images)
        except SwarmUnavailable as exc:
            _unavailable(exc)
        clusters.append(cluster)
        return cluster

    yield factory
    errors = []
    for cluster in reversed(clusters):
        try:
            cluster.close()
        except Exception as exc:  # close every cluster, then report
            errors.append(f"slot {cluster.slot}: {exc!r}")
    assert not errors, f"closing swarm clusters failed: {errors}"


@pytest.fixture(scope="session")
def swarm_cluster(swarm_cluster_factory: SwarmFactory, python_kernel_image: str) -> SwarmCluster:
    """The shared 3-node cluster (4 fake GPUs), python_kernel_image on every node."""
    return swarm_cluster_factory(gpu_layout(2, 1, 1), images=[python_kernel_image])


def _reset(cluster: SwarmCluster) -> None:
    cluster.cleanup_services()
    for node in cluster.nodes:
        cluster.activate(node)


@pytest.fixture
def swarm(swarm_cluster: SwarmCluster) -> Iterator[SwarmCluster]:
    """``swarm_cluster`` with no services and every node active, before and after."""
    _reset(swarm_cluster)
    yield swarm_cluster
    _reset(swarm_cluster)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed cluster test's report ends with the tails of the nodes' dockerd logs."""
    report = yield
    cluster = getattr(item, "funcargs", {}).get("swarm_cluster")
    if report.failed and isinstance(cluster, SwarmCluster):
        report.sections.append(("swarm dockerd logs", cluster.diagnostics(lines=25)))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long each swarm took to come up (by phase) and to go."""
    if REPORT:
        terminalreporter.section("gpuenv swarm clusters")
        for line in REPORT:
            terminalreporter.write_line(line)
