"""The kernel broker's port bookkeeping stays flat over 10,000 kernel start/stop cycles.

Goal: after each stop (or failed start) the five ports a brokered start took from
jupyter_client's ``LocalPortCache`` are given back, so
``LocalPortCache.instance().currently_used_ports`` holds only the ports of kernels still
running (0 here) however many kernels came and went. (A leak here once made
``find_available_port`` spin forever after some thousands of kernels: it loops until the
OS hands it a port the cache does not hold.)

Two parts, one broker (a real ``KernelBroker`` with a real ``Services.build`` of a
``GpuEnv`` whose docker_images holds the test image; the catalog probes it once):

1. Port bookkeeping alone, ``--cycles`` (10,000) cycles. The full loop against real
   containers would take far too long for 10,000 cycles (a container start, readiness
   wait and removal each; part 2 prints the extrapolation), so each cycle runs the
   broker's own code up to the container and from it: the broker's kernel manager
   (``KernelBroker._kernel_manager``), a ``DockerProvisioner`` under the user's config
   (``provisioner.use``), ``pre_launch`` (real environment lookup in the already-probed
   catalog, real policy, CurveZMQ keys, real port choice, the connection file), then
   the stop path exactly as ``KernelBroker._start`` / ``stop`` have it: the runtime
   re-made from its record with the broker's context (an ``EngineRuntime`` that has no
   container), a ``BrokeredKernel`` holding ``ports=cached_ports``, the connection
   file removed, ``KernelBroker.stop`` (``kernel_record.remove``). Every
   ``--fail-every``-th cycle takes the failed-start path instead (``provisioner.cleanup()``
   and the connection file removed). Only ``launch_kernel`` (the container) is left out;
   its last act on the start's progress record (ready / failed) is done in its place.
   The cache's size is sampled every ``--sample-every`` cycles; "flat" is the last sample
   equal to the first.
2. Real kernels through the broker, ``--kernels`` (20) cycles: ``KernelBroker.start`` and
   ``stop`` of real containers for a real system user (created here, deleted after),
   with the port count before, while each kernel runs, and after. Needs root; skipped
   (and said so) otherwise.

Needs Docker (the catalog's image probe; part 1 exits 1 when that fails).
Run: ``python benchmarks/broker_port_cycles.py [--cycles 10000] [--kernels 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import docker  # noqa: E402
from jupyter_client.connect import LocalPortCache  # noqa: E402
from jupyter_client.kernelspec import KernelSpec  # noqa: E402

from jupyter_gpuenv.broker import rules as broker_rules  # noqa: E402
from jupyter_gpuenv.broker.kernel_record import BrokeredKernel  # noqa: E402
from jupyter_gpuenv.broker.kernels import KernelBroker  # noqa: E402
from jupyter_gpuenv.broker.rules import HubUser  # noqa: E402
from jupyter_gpuenv.config import GpuEnv  # noqa: E402
from jupyter_gpuenv.docker import labels  # noqa: E402
from jupyter_gpuenv.environments.model import Environment  # noqa: E402
from jupyter_gpuenv.provisioning import start_progress  # noqa: E402
from jupyter_gpuenv.provisioning.container import orphans  # noqa: E402
from jupyter_gpuenv.provisioning.container.provisioner import DockerProvisioner  # noqa: E402
from jupyter_gpuenv.provisioning.container.readiness import PORT_NAMES  # noqa: E402
from jupyter_gpuenv.provisioning.container.runtimes import RUNTIMES  # noqa: E402
from jupyter_gpuenv.services import Services  # noqa: E402
from tests.provisioning.server_process import make_shared_dir  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402
from tests.support.system_user import UserUnavailable, system_user  # noqa: E402

ENVIRONMENT = "python"


def used_ports() -> int:
    return len(LocalPortCache.instance().currently_used_ports)


def connection_files() -> int:
    """Files in this process's private connection folder (the broker's kernel managers')."""
    return sum(1 for _ in Path(orphans.private_connection_dir()).glob("kernel-*.json"))


def make_broker(image: str, homes: Path) -> KernelBroker:
    """As tests/broker/test_kernel_broker.py builds it: a real catalog of the test image."""
    orphans.use_instance_id(f"gpuenv-bench-ports-{secrets.token_hex(4)}")
    config = GpuEnv()
    config.docker_images = {ENVIRONMENT: {"image": image, "gpus": "none"}}
    config.restrict_to_configured_images = True
    config.kernel_start_timeout = 120
    services = Services.build(config, cache_path=None)
    rules = {
        "default": {
            "environments": [ENVIRONMENT],
            "max_kernels": 1,
            "notebook_roots": [f"{homes}/{{username}}"],
        },
        "groups": {},
        "users": {},
    }
    return KernelBroker(config, services, rules)


def probed_environment(broker: KernelBroker) -> Environment:
    """The catalog's environment after its one image probe; SystemExit(1) saying why not."""
    found = [e for e in broker.services.catalog.list_environments_sync() if e.name == ENVIRONMENT]
    if not found:
        raise SystemExit(f"FAILED: the catalog lists no {ENVIRONMENT!r} environment")
    env = found[0]
    if env.python_version is None or not env.ipykernel:
        why = "; ".join(env.problems) or env.cannot_start or "no python/ipykernel found"
        raise SystemExit(f"FAILED: the catalog's probe of {env.location.get('image')}: {why}")
    return env


# -- part 1 ---------------------------------------------------------------------------


async def bookkeeping_cycle(
    broker: KernelBroker, user: HubUser, env: Environment, fail: bool
) -> None:
    """One brokered start and stop (or failed start), without the container."""
    kernel_id = str(uuid.uuid4())
    rules = broker.rules_of(user)
    await broker._allowed_environment(rules, env.id)
    encryption = broker._encryption(None, env)
    km = broker._kernel_manager(kernel_id, secrets.token_hex(16), "hmac-sha256")
    spec = KernelSpec(argv=[], display_name=env.display_name, language="python")
    spec.name = ""
    provisioner = DockerProvisioner(
        kernel_id=kernel_id, kernel_spec=spec, parent=km, environment_id=env.id
    )
    provisioner.use(broker_rules.user_config(broker.config, user, rules), broker.services)
    await provisioner.pre_launch(
        cwd=None, env={"JPY_SESSION_NAME": ""}, transport_encryption=encryption
    )
    preparation = provisioner.preparation
    assert len(preparation.cached_ports) == len(PORT_NAMES), preparation.cached_ports
    (progress,) = start_progress.starts(kernel_id=kernel_id)
    if fail:
        # launch_kernel failed: its progress says so; then KernelBroker._start's except.
        progress.fail("benchmark: the container step is left out")
        await provisioner.cleanup()
        km.cleanup_connection_file()
        return
    progress.finish()  # launch_kernel's last act on success
    # KernelBroker._start after launch_kernel, then KernelBroker.stop.
    started = provisioner.runtime
    assert started is not None
    started.keep_after_exit()
    record = started.record()
    runtime = RUNTIMES[record["kind"]].from_record(record, broker._context(kernel_id))
    kernel = BrokeredKernel(
        kernel_id=kernel_id,
        user=user.name,
        environment_id=env.id,
        runtime=runtime,
        gpus=[],
        ports=list(preparation.cached_ports),
    )
    broker.kernels[kernel_id] = kernel
    km.cleanup_connection_file()
    await broker.stop(kernel)


async def part_one(
    broker: KernelBroker, env: Environment, cycles: int, fail_every: int, sample_every: int
) -> bool:
    print(
        f"part 1: port bookkeeping alone, {cycles} start/stop cycles (broker code up to and "
        "from the container; real containers would take far too long for this many), "
        f"every {fail_every}th a failed start"
    )
    # No container runs for this user: any ordinary uid:gid does.
    user = HubUser("benchports", (), 1000, 1000, "/nonexistent")
    samples: list[tuple[int, int]] = [(0, used_ports())]
    failed = 0
    started = time.perf_counter()
    for cycle in range(1, cycles + 1):
        fail = fail_every > 0 and cycle % fail_every == 0
        failed += fail
        await bookkeeping_cycle(broker, user, env, fail)
        if cycle % sample_every == 0 or cycle == cycles:
            samples.append((cycle, used_ports()))
    seconds = time.perf_counter() - started
    print("  cycle -> ports held in LocalPortCache: " + ", ".join(f"{c}: {n}" for c, n in samples))
    print(
        f"  {cycles} cycles ({cycles - failed} stopped, {failed} failed starts) in "
        f"{seconds:.1f} s: {cycles / seconds:.0f} cycles/s; "
        f"{cycles * len(PORT_NAMES)} ports taken ({len(PORT_NAMES)} per start)"
    )
    print(
        f"  broker kernels left: {len(broker.kernels)}; connection files left: "
        f"{connection_files()}; start-progress records kept: {len(start_progress.starts())}; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    flat = samples[-1][1] == samples[0][1] and not broker.kernels
    verdict = "flat (meets the goal)" if flat else "GROWS (misses the goal)"
    print(f"  verdict: {verdict}: first sample {samples[0][1]}, last {samples[-1][1]}")
    return flat


# -- part 2 ---------------------------------------------------------------------------


async def part_two(broker: KernelBroker, env: Environment, kernels: int, homes: Path) -> bool:
    print(f"part 2: real kernels (containers) through the broker, {kernels} start/stop cycles")
    if os.geteuid() != 0:
        print("  skipped: creating the kernels' system user needs root")
        return True
    try:
        docker.from_env().ping()
    except Exception as err:
        print(f"  skipped: Docker does not answer: {err}")
        return True
    try:
        with system_user("benchport", system=False) as account:
            home = homes / account.name
            home.mkdir(mode=0o700)
            os.chown(home, account.uid, account.gid)
            user = HubUser(account.name, (), account.uid, account.gid, str(home))
            try:
                return await real_cycles(broker, env, user, kernels, home)
            finally:
                remove_containers(account.name)
    except UserUnavailable as err:
        print(f"  skipped: no system user: {err}")
        return True


async def real_cycles(
    broker: KernelBroker, env: Environment, user: HubUser, kernels: int, home: Path
) -> bool:
    before = used_ports()
    running: list[int] = []
    times: list[float] = []
    for _ in range(kernels):
        body = {
            "kernel_id": str(uuid.uuid4()),
            "environment_id": env.id,
            "key": secrets.token_hex(16),
            "signature_scheme": "hmac-sha256",
            "cwd": str(home),
        }
        started = time.perf_counter()
        answer = await broker.start(user, body)
        running.append(used_ports())
        await broker.stop(broker.of(user.name, answer["kernel"]["kernel_id"]))
        times.append(time.perf_counter() - started)
    after = used_ports()
    print(
        f"  ports held before: {before}; while each kernel ran: "
        f"{', '.join(map(str, running))}; after: {after}"
    )
    print(
        f"  {kernels} kernel(s) in {sum(times):.1f} s ({sum(times) / kernels:.2f} s per "
        f"start+stop, i.e. {kernels / sum(times) * 3600:.0f} per hour: 10,000 would take "
        f"{10_000 * sum(times) / kernels / 3600:.1f} h); connection files left: "
        f"{connection_files()}"
    )
    ok = after == before and all(n == before + len(PORT_NAMES) for n in running)
    verdict = "flat (meets the goal)" if ok else "GROWS (misses the goal)"
    print(f"  verdict: {verdict}")
    return ok


def remove_containers(user: str) -> None:
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"{labels.USER}={user}"}):
        container.remove(force=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--kernels", type=int, default=20)
    parser.add_argument("--fail-every", type=int, default=10, help="every Nth cycle fails")
    parser.add_argument("--sample-every", type=int, default=1000)
    args = parser.parse_args()
    try:
        client = docker.from_env()
        client.ping()
        image = ensure_image(client, "python-kernel")
    except Exception as err:
        print(f"FAILED: Docker is needed for the catalog's image probe: {err}")
        return 1
    print(f"image: {image}; {os.cpu_count()} CPUs; euid {os.geteuid()}")
    homes = make_shared_dir("gpuenv-bench-ports-", None, None)
    broker = make_broker(image, homes)
    try:
        env = probed_environment(broker)
        flat = await part_one(broker, env, args.cycles, args.fail_every, args.sample_every)
        real = await part_two(broker, env, args.kernels, homes) if args.kernels > 0 else True
    except SystemExit as err:
        print(err)
        return 1
    finally:
        for kernel in list(broker.kernels.values()):
            await broker.stop(kernel)
        broker.services.stop()
        shutil.rmtree(homes, ignore_errors=True)
    return 0 if flat and real else 2


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
