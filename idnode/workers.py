"""The node's extra worker processes: how many, started, watched, brought back.

``workers = N`` runs N processes that answer on the same ports: the node and
N-1 workers, each with its own event loop, database engines and caches, fed by
the same change feed, bound with SO_REUSEPORT so the kernel spreads clients over them.
A worker gets the node's configuration, with the ports the node bound, in its
IDNODE_* twins; counts into the node's metrics directory; tells it is ready
with its own "listening" line; and stops when the node closes its stdin (so it
cannot outlive a node that was killed). A worker that dies while the node runs
is started again after a pause that grows while its successors keep dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metrics import exposition, multiprocess
from metrics.instruments import WORKER_RESTARTS, WORKERS_CONFIGURED, WORKERS_LIVE

from .config import ENV_PREFIX, Config, Endpoint
from .listen import StartupError

log = logging.getLogger("idnode")

WORKER_START_SECONDS = 60.0
"""How long a worker may take to say it is listening."""
WORKER_STOP_SECONDS = 30.0
"""How long a stopping worker may take to finish its requests before it is killed."""


def worker_count(config: Config) -> int:
    """``workers``, where 0 means one process per core this process may use."""
    if config.workers > 0:
        return config.workers
    return usable_cores()


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may run on: its affinity mask, capped by the CPU
    quota of its cgroup (a container limited to 2 CPUs on a 64-core host
    should not start 64 processes that the quota then throttles)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cpu_quota(cgroup_root: Path, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs' worth of time this process's cgroup (and every cgroup above it)
    allows, or None when unlimited or unknown. cgroup v2 ``cpu.max``
    (``QUOTA PERIOD`` or ``max PERIOD``); v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``."""
    try:
        lines = proc_cgroup.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    limits: list[float] = []
    for line in lines:
        fields = line.split(":", 2)  # hierarchy id : controllers : path
        if len(fields) != 3:
            continue
        _, controllers, group = fields
        if not controllers:  # cgroup v2: "0::/path"
            limits += _walk(cgroup_root, group, _v2_limit)
        elif "cpu" in controllers.split(","):
            for name in (controllers, "cpu", "cpu,cpuacct"):
                if (cgroup_root / name).is_dir():
                    limits += _walk(cgroup_root / name, group, _v1_limit)
                    break
    return min(limits) if limits else None


def _walk(mount: Path, group: str, read: Callable[[Path], float | None]) -> list[float]:
    """The limits of ``group`` and of every group above it that the mount shows."""
    found = []
    parts = [p for p in group.strip("/").split("/") if p]
    for depth in range(len(parts), -1, -1):
        limit = read(mount.joinpath(*parts[:depth]))
        if limit is not None:
            found.append(limit)
    return found


def _v2_limit(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_limit(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        period = int((directory / "cpu.cfs_period_us").read_text(encoding="ascii"))
        return None if quota <= 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):
        return None


@dataclass
class Backoff:
    """Pauses before a dead worker's successor starts: ``first`` seconds, doubled
    for each successor that died within ``steady`` seconds, at most ``longest``;
    a worker that ran ``steady`` seconds resets it."""

    first: float = 1.0
    longest: float = 60.0
    steady: float = 60.0
    failures: int = 0

    def after_exit(self, ran_for: float) -> float:
        """The pause before the next start, given how long the dead one ran."""
        if ran_for >= self.steady:
            self.failures = 0
        pause = min(self.longest, self.first * (1 << min(self.failures, 30)))
        self.failures += 1
        return pause


@dataclass(frozen=True)
class Listeners:
    """Where the node's services listen: the workers bind the same ports."""

    http: Endpoint
    handle: Endpoint
    dns: Endpoint


def worker_environment(config: Config, at: Listeners) -> dict[str, str]:
    """A worker's environment: the node's settings as IDNODE_* variables, with the
    ports the node bound and nothing that only the node does (syncing, the demo,
    creating the administrator)."""
    settings = dataclasses.replace(
        config,
        http=at.http,
        handle=at.handle,
        dns=at.dns,
        workers=1,
        bootstrap_admin="",
        demo=False,
        toplevel="",
        metrics="",
        log_format="json",
        data_dir="",  # the paths below are already inside it
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for item in dataclasses.fields(settings):
        environ[ENV_PREFIX + item.name.upper()] = str(getattr(settings, item.name))
    shared = multiprocess.directory()
    if shared is not None:  # count into the node's metrics directory
        environ[multiprocess.SHARED_DIR_ENV] = shared
    return environ


@dataclass
class _Worker:
    process: asyncio.subprocess.Process
    started: float


class Workers:
    """The extra processes of ``workers``: started, watched, restarted, stopped."""

    def __init__(self, backoff: Backoff | None = None) -> None:
        self.processes: list[asyncio.subprocess.Process] = []
        self.wanted = 0
        self._config: Config | None = None
        self._at: Listeners | None = None
        self._backoff = backoff or Backoff()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def spawn(self, config: Config, at: Listeners, count: int) -> None:
        """Start ``count`` workers and wait until each listens (StartupError if
        one cannot start: the node does not run short-handed from the outset)."""
        self._config, self._at = config, at
        self.wanted = max(count, 0)
        WORKERS_CONFIGURED.set(self.wanted + 1)
        self._publish()
        try:
            for _ in range(self.wanted):
                worker = await self._start_one()
                if worker is None:
                    raise StartupError("a worker process did not start")
        except BaseException:
            await self.stop()
            raise

    async def _start_one(self) -> _Worker | None:
        """One worker, listening and watched; None if it did not get that far."""
        assert self._config is not None and self._at is not None
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "idnode",
            "worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=worker_environment(self._config, self._at),
        )
        try:
            ready = await asyncio.wait_for(_await_listening(process), WORKER_START_SECONDS)
        except TimeoutError:
            ready = False
        if not ready:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            exposition.forget_process(process.pid)
            return None
        worker = _Worker(process, time.monotonic())
        self.processes.append(process)
        self._publish()
        self._track(self._watch(worker))
        return worker

    def _track(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: _Worker) -> None:
        """Keep its stdout drained; when it dies while the node runs, start another."""
        process = worker.process
        assert process.stdout is not None
        while await process.stdout.readline():
            pass
        status = await process.wait()
        exposition.forget_process(process.pid)
        with contextlib.suppress(ValueError):
            self.processes.remove(process)
        self._publish()
        if self._stopping:
            return
        pause = self._backoff.after_exit(time.monotonic() - worker.started)
        log.error(
            "worker %s exited with status %s; starting another in %.0f s",
            process.pid,
            status,
            pause,
        )
        await self._replace(pause)

    async def _replace(self, pause: float) -> None:
        """Start a successor after ``pause``; keep trying, longer each time."""
        while not self._stopping:
            await asyncio.sleep(pause)
            if self._stopping:
                return
            try:
                worker = await self._start_one()
            except OSError as exc:  # no memory, no process slots...
                log.error("cannot start a worker: %s", exc)
                worker = None
            if worker is not None:
                WORKER_RESTARTS.inc()
                log.info("worker %s started in place of one that exited", worker.process.pid)
                return
            pause = self._backoff.after_exit(0.0)
            log.error("a new worker did not start; trying again in %.0f s", pause)

    def _publish(self) -> None:
        WORKERS_LIVE.set(len(self.processes) + 1)  # the node serves too

    def reload(self, settings: Mapping[str, Any]) -> None:
        """Pass reloaded settings on: one JSON line on each worker's control pipe;
        workers started later get them in their environment."""
        if self._config is not None:
            self._config = dataclasses.replace(self._config, **settings)
        line = json.dumps(dict(settings)).encode() + b"\n"
        for worker in self.processes:
            if worker.stdin is not None and not worker.stdin.is_closing():
                worker.stdin.write(line)

    async def stop(self) -> None:
        self._stopping = True
        running = list(self.processes)
        for worker in running:
            if worker.stdin is not None:
                worker.stdin.close()  # the worker's signal to stop
        for worker in running:
            try:
                await asyncio.wait_for(worker.wait(), WORKER_STOP_SECONDS)
            except TimeoutError:
                worker.kill()
                await worker.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _await_listening(worker: asyncio.subprocess.Process) -> bool:
    assert worker.stdout is not None
    while line := await worker.stdout.readline():
        if line.startswith(b"listening worker "):
            return True
    return False
