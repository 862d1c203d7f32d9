"""The catalog: one list of every environment, served from memory and kept fresh cheaply.

Flow: sources (sources.py over conda.py, venv.py, docker_images.py) yield candidates ->
probe results come from the cache (cache.py) or a parallel probe (probe.py) -> annotators
(the doctor) -> an immutable snapshot (snapshot.py). Requests read the snapshot; when it
is older than a few seconds a background scan re-stats the sources (and asks Docker less
often) and probes only what changed. A request never probes and never calls Docker unless
there is no snapshot yet or a refresh is asked for.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import GpuEnv
from ..config_check import problems_json
from ..errors import BadRequest, DockerUnavailable, EnvironmentNotFound
from .cache import ProbeCache, default_cache_path
from .candidates import Candidate, build_environment
from .export import export_environment
from .model import Environment
from .probe import ProbeCounter, ProbeSlots, probe_image, probe_prefix
from .probe_result import ProbeResult
from .pytorch_images import ImageConfigs
from .scan_progress import IDLE, PartialListing, ScanProgress, ScanTracker
from .snapshot import (
    Snapshot,
    environment_from_json,
    environment_to_json,
    keep_known_versions,
    still_known_docker,
)
from .sources import Sources

Annotator = Callable[[list[Environment]], None]
ProgressCallback = Callable[[ScanProgress], None]
TRANSIENT_RETRY = 60.0
PROGRESS_INTERVAL = 0.1  # seconds between progress reports to a waiting caller
UNSET: Any = object()

__all__ = ["Annotator", "Catalog", "Snapshot"]


@dataclass
class _ScanJob:
    force: bool
    future: Future = field(default_factory=Future)
    started: bool = False


class Catalog:
    """Discovers, probes and caches environments; see the module docstring for the flow."""

    def __init__(
        self,
        config: Any,
        log: Any = None,
        *,
        cache_path: Path | None | Any = UNSET,
        revalidate_after: float = 2.0,
        docker_revalidate_after: float = 10.0,
        probe_workers: int | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.annotators: list[Annotator] = []
        self.probe_counter = ProbeCounter()
        self._slots = ProbeSlots()
        self.revalidate_after = revalidate_after
        self.docker_revalidate_after = docker_revalidate_after
        self._cache = ProbeCache(default_cache_path() if cache_path is UNSET else cache_path)
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._pending: _ScanJob | None = None
        self._running: _ScanJob | None = None
        self._tracker: ScanTracker | None = None
        self._last_scan: ScanProgress = IDLE
        self._last_failure: BaseException | None = None
        self._scans = ThreadPoolExecutor(1, thread_name_prefix="gpuenv-catalog")
        workers = probe_workers or max(4, 2 * (os.cpu_count() or 2))
        self._local_probes = ThreadPoolExecutor(workers, thread_name_prefix="gpuenv-probe")
        self._docker_work = ThreadPoolExecutor(8, thread_name_prefix="gpuenv-docker")
        self.sources = Sources(
            config,
            on_new_prefixes=self._new_prefixes,
            image_configs=ImageConfigs(self._cache.image_configs()),
        )

    def _new_prefixes(self) -> None:
        self._request_scan(force=False)

    # ----------------------------------------------------------------- public, sync
    def list_environments_sync(self, refresh: bool = False) -> list[Environment]:
        return self.snapshot_sync(refresh).environments

    def snapshot_sync(
        self, refresh: bool = False, on_progress: ProgressCallback | None = None
    ) -> Snapshot:
        """The listing; ``on_progress`` hears how a scan it waits for gets on."""
        snapshot = self._snapshot
        if refresh or snapshot is None:
            future = self._request_scan(force=refresh)
            if on_progress is None:
                return future.result()
            while not wait([future], timeout=PROGRESS_INTERVAL).done:
                on_progress(self.scan_progress())
            result: Snapshot = future.result()
            count = len(result.environments)
            on_progress(ScanProgress("probing", count, count))
            return result
        self._maybe_revalidate(snapshot)
        return snapshot

    def scan_progress(self) -> ScanProgress:
        """How far the running scan has come; idle, with the last scan's count, when none runs."""
        tracker = self._tracker
        return tracker.progress() if tracker is not None else self._last_scan

    def partial_listing(self) -> PartialListing:
        """The listing now, never waiting for a scan: before the first scan has ended,
        the environments probed so far with the scan's progress (``complete`` False)."""
        with self._lock:  # the snapshot and the scan's progress as one scan left them
            snapshot, failure, tracker = self._snapshot, self._last_failure, self._tracker
            progress = self.scan_progress()
            job = self._running or self._pending
        if snapshot is not None:
            self._maybe_revalidate(snapshot)
            return PartialListing(snapshot.environments, True, progress, snapshot)
        future = job.future if job is not None else self._request_scan(force=False)
        if future.done() and future.exception() is None:
            done: Snapshot = future.result()
            return PartialListing(done.environments, True, self.scan_progress(), done)
        if failure is not None:
            raise failure
        environments = tracker.environments() if tracker is not None else []
        problems = problems_json(self.config) if isinstance(self.config, GpuEnv) else []
        return PartialListing(environments, False, progress, None, problems)

    def get_sync(self, env_id: str) -> Environment:
        env = self.snapshot_sync().by_id.get(env_id)
        if env is None and self._stale(self._snapshot, 0.5):
            env = self._request_scan(force=False).result().by_id.get(env_id)
        if env is None:
            raise EnvironmentNotFound(f"no environment with id {env_id!r}")
        return env

    def resolve_sync(self, reference: str) -> Environment:
        """An environment by id, else by its unique name (the CLI accepts both)."""
        snapshot = self.snapshot_sync()
        if reference in snapshot.by_id:
            return snapshot.by_id[reference]
        named = [env for env in snapshot.environments if env.name == reference]
        if len(named) == 1:
            return named[0]
        if named:
            ids = ", ".join(env.id for env in named)
            raise BadRequest(f"{reference!r} names several environments; use an id: {ids}")
        try:
            return self.get_sync(reference)
        except EnvironmentNotFound:
            raise EnvironmentNotFound(
                f"no environment with id or name {reference!r} (see `jupyter gpuenv list`)"
            ) from None

    def export_sync(
        self, env_id: str, no_builds: bool = False, from_history: bool = False
    ) -> tuple[str, str]:
        """``(filename, environment.yml text)``; see export.py for the three kinds."""
        env = self.resolve_sync(env_id)
        return export_environment(
            env,
            no_builds=no_builds,
            from_history=from_history,
            docker_client=self.sources.docker_client,
            timeout=self.config.probe_timeout,
        )

    def cached_environments(self) -> list[Environment]:
        """What is known now, without probing or waiting (kernelspecs use this).

        Before the first scan of this process has finished, the last listing saved on disk
        is returned and a scan is started in the background.
        """
        snapshot = self._snapshot
        if snapshot is not None:
            self._maybe_revalidate(snapshot)
            return snapshot.environments
        self._request_scan(force=False)
        saved = self._cache.listing(self.sources.config_key())
        restored = [environment_from_json(item) for item in saved or []]
        return [env for env in restored if env is not None]

    def environments_within(self, timeout: float) -> list[Environment]:
        """The listing when a scan ends within ``timeout`` seconds, else what it has
        probed so far (a slow first scan must not hold up whoever asks)."""
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot.environments
        future = self._request_scan(force=False)
        if wait([future], timeout=timeout).done:
            return future.result().environments
        tracker = self._tracker
        return tracker.environments() if tracker is not None else []

    # ---------------------------------------------------------------- public, async
    async def list_environments(self, refresh: bool = False) -> list[Environment]:
        return (await self.snapshot(refresh)).environments

    async def snapshot(self, refresh: bool = False) -> Snapshot:
        snapshot = self._snapshot
        if refresh or snapshot is None:
            return await asyncio.wrap_future(self._request_scan(force=refresh))
        self._maybe_revalidate(snapshot)
        return snapshot

    async def get(self, env_id: str) -> Environment:
        snapshot = await self.snapshot()
        if env_id in snapshot.by_id:
            return snapshot.by_id[env_id]
        return await asyncio.to_thread(self.get_sync, env_id)

    async def export(
        self, env_id: str, no_builds: bool = False, from_history: bool = False
    ) -> tuple[str, str]:
        await self.get(env_id)
        return await asyncio.to_thread(self.export_sync, env_id, no_builds, from_history)

    def stop(self) -> None:
        """Stop background work (server shutdown); running probes end at their timeout."""
        for pool in (self._scans, self._local_probes, self._docker_work):
            pool.shutdown(wait=False, cancel_futures=True)
        self.sources.close()

    # ------------------------------------------------------------------- scheduling
    def _stale(self, snapshot: Snapshot | None, age: float) -> bool:
        return snapshot is None or time.monotonic() - snapshot.local_checked > age

    def _stale_docker(self, snapshot: Snapshot | None, now: float) -> bool:
        return snapshot is None or now - snapshot.docker_checked > self.docker_revalidate_after

    def _maybe_revalidate(self, snapshot: Snapshot) -> None:
        if self._stale(snapshot, self.revalidate_after) and self._running is None:
            if self._pending is None:
                self._request_scan(force=False)

    def _request_scan(self, force: bool) -> Future:
        with self._lock:
            pending = self._pending
            if pending is not None and not pending.started:
                pending.force = pending.force or force
                return pending.future
            if not force and self._running is not None:
                return self._running.future
            job = _ScanJob(force)
            self._pending = job
        self._scans.submit(self._run_job, job)
        return job.future

    def _run_job(self, job: _ScanJob) -> None:
        with self._lock:
            job.started = True
            self._running = job
            if self._pending is job:
                self._pending = None
        tracker = self._tracker = ScanTracker()
        snapshot: Snapshot | None = None
        failure: BaseException | None = None
        try:
            snapshot = self._scan(job.force)
        except BaseException as exc:  # surfaced to whoever waits on the future
            failure = exc
        finally:
            # The snapshot and the scan's end are published together: a listing never
            # says complete while its progress still says probing.
            with self._lock:
                if snapshot is not None:
                    self._snapshot = snapshot
                self._last_failure = failure
                self._running = None
                self._tracker = None
                ended = tracker.ended()
                if ended.total is not None:  # a scan that found nothing changed keeps the count
                    self._last_scan = ended
        if failure is not None:
            job.future.set_exception(failure)
        else:
            job.future.set_result(snapshot)

    # ------------------------------------------------------------------------ scans
    def _scan(self, force: bool) -> Snapshot:
        previous = self._snapshot
        now = time.monotonic()
        if force:
            self._cache.forget_transient()
            self.sources.reconnect_docker()
        known = {str(e.location.get("prefix")) for e in (previous.environments if previous else [])}
        self.sources.list_conda_cli(force, known)
        ask_docker = force or self._stale_docker(previous, now)
        docker_future = (
            self._docker_work.submit(self.sources.docker_candidates) if ask_docker else None
        )
        broker_future = (
            self._docker_work.submit(self.sources.brokered_environments) if ask_docker else None
        )
        local = self.sources.local_candidates()
        if docker_future is not None and broker_future is not None:
            (docker_cands, docker_reason), docker_checked = docker_future.result(), time.monotonic()
            brokered, broker_reason = broker_future.result()
            docker_reason = docker_reason or broker_reason
        else:
            assert previous is not None
            docker_cands, docker_reason = previous.docker_candidates, previous.docker_reason
            docker_checked, brokered = previous.docker_checked, previous.brokered
        candidates = sorted([*local, *docker_cands], key=lambda c: c.sort_key)
        fingerprints = {c.id: c.fingerprint for c in candidates}
        fingerprints.update({e.id: json.dumps(e.to_json(), sort_keys=True) for e in brokered})
        retry = bool(previous and previous.transient and now - previous.built > TRANSIENT_RETRY)
        if previous is not None and not (force or retry) and fingerprints == previous.fingerprints:
            return previous.checked(now, docker_checked)
        if retry:
            self._cache.forget_transient()
        results: dict[str, Future] = {}
        for candidate in sorted(candidates, key=lambda c: c.kind != "docker"):
            if candidate.identity and candidate.identity not in results:
                results[candidate.identity] = self._probe_later(candidate)
        if self._tracker is not None:
            self._tracker.probing(candidates, results)
        environments = []
        transient = False
        for candidate in candidates:
            probe = results[candidate.identity].result() if candidate.identity else None
            transient = transient or bool(probe and probe.transient)
            env = build_environment(candidate, probe)
            if candidate.kind == "docker" and candidate.identity is None and previous:
                keep_known_versions(env, previous.by_id.get(env.id))
            environments.append(env)
        environments += brokered
        if docker_reason and previous is not None:
            environments += still_known_docker(previous, docker_reason, environments)
        # The broker annotated its environments against the engine it runs them on.
        self._annotate([e for e in environments if not any(e is b for b in brokered)])
        snapshot = Snapshot(
            environments,
            fingerprints,
            docker_cands,
            docker_reason,
            local_checked=now,
            docker_checked=docker_checked,
            built=now,
            transient=transient or bool(docker_reason and getattr(self.config, "broker_url", "")),
            brokered=brokered,
            problems=problems_json(self.config) if isinstance(self.config, GpuEnv) else [],
        )
        listing = [environment_to_json(env) for env in environments]
        self._cache.save(listing, self.sources.config_key())
        return snapshot

    def _probe_later(self, candidate: Candidate) -> Future:
        """A future probe result: from the cache, or a probe submitted to a pool."""
        assert candidate.identity is not None
        done: Future = Future()
        if candidate.python is None and candidate.kind != "docker":
            done.set_result(None)  # discovery already said why it cannot run
            return done
        cached = self._cache.get(candidate.identity)
        if cached is not None:
            done.set_result(cached)
            return done
        pool = self._docker_work if candidate.kind == "docker" else self._local_probes
        return pool.submit(self._probe, candidate)

    def _probe(self, candidate: Candidate) -> ProbeResult:
        assert candidate.identity is not None
        timeout = float(self.config.probe_timeout)
        self.probe_counter.add(candidate.kind)
        if candidate.kind == "docker":
            try:
                client = self.sources.docker_client(ping=False)
            except DockerUnavailable as exc:
                result = ProbeResult.failed(exc.message, transient=True)
            else:
                image_id = candidate.location["image_id"]
                with self._slots.heavy():
                    result = probe_image(client, image_id, candidate.python, timeout)
        else:
            assert candidate.python is not None
            with self._slots.light():
                result = probe_prefix(candidate.python, candidate.location["prefix"], timeout)
        self._cache.put(candidate.identity, result)
        if self.log is not None and result.problems:
            self.log.info("gpuenv probe of %s: %s", candidate.id, "; ".join(result.problems))
        return result

    def _annotate(self, environments: list[Environment]) -> None:
        for annotator in list(self.annotators):
            try:
                annotator(environments)
            except Exception:
                if self.log is not None:
                    self.log.exception("gpuenv: catalog annotator %r failed", annotator)
