"""The sync worker honours ``Retry-After`` (sync/PROTOCOL.md §3, §10): against the
mock top-level node's ``busy`` fault, on loopback, with every request timed on
the mock's side. After a busy answer nothing at all reaches the top-level node
before the time it asked for (delta-seconds or an HTTP date); a huge ask is
clamped, an unusable one gets the worker's own backoff, a stop ends the wait at
once, and in the end every event is delivered exactly once."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import itertools
import logging
import math
import random
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from loadtest.refdns import free_port
from metrics.instruments import SYNC_RETRY_AFTER
from registry import store
from registry.db import create_engine, read_transaction
from registry.services import Actor, Registry
from sync.client import parse_retry_after
from sync.toplevel import ledger
from sync.toplevel.app import Faults, TopLevel, build_app
from sync.worker import (
    MAX_RETRY_AFTER_SECONDS,
    Backoff,
    SyncWorker,
    Unavailable,
    asked_wait,
    wait_after,
)
from tests.factories import hosted_enterprise
from tests.test_cli import run_idnode
from tests.test_sync_faults import (
    assert_exactly_once,
    outbox,
    seed_offline,
    sync_process,
    sync_until_drained,
    toplevel,
    wait_until,
)
from tests.test_sync_worker import outbox as worker_outbox
from tests.test_sync_worker import register, top_level_events, worker

SLACK = 0.01
"""How early a timer may fire, and the mock's and the worker's clocks may differ,
on one machine."""
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# --- what the mock saw ----------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    arrived: float
    """When the request reached the mock (monotonic)."""
    answered: float
    """When its answer left."""
    method: str
    path: str
    status: int


@dataclass
class Mock:
    base: str
    top: TopLevel
    seen: list[Seen] = field(default_factory=list)

    def busy(self) -> list[Seen]:
        return [s for s in self.seen if s.status in (429, 503)]

    def gaps_after_busy(self) -> list[tuple[Seen, float]]:
        """Each busy answer that was followed by another request, and the time from
        the answer to that next request's arrival."""
        seen = sorted(self.seen, key=lambda s: s.arrived)
        return [
            (s, after.arrived - s.answered)
            for s, after in itertools.pairwise(seen)
            if s.status in (429, 503)
        ]


@contextlib.asynccontextmanager
async def mock_toplevel(tmp_path: Path, faults: str) -> AsyncIterator[Mock]:
    """The mock top-level node on a loopback port, with ``faults``, timing each
    request before any of its own handling (the busy fault included)."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'top.db'}")
    await ledger.create(engine)
    top = TopLevel(engine, faults=Faults.parse(faults))
    app = build_app(top)
    mock = Mock("", top)

    @web.middleware
    async def timed(
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        arrived = time.monotonic()
        response: web.StreamResponse = await handler(request)
        mock.seen.append(
            Seen(arrived, time.monotonic(), request.method, request.path, response.status)
        )
        return response

    app.middlewares.insert(0, timed)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    mock.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield mock
    finally:
        await runner.cleanup()
        await engine.dispose()


async def pending(registry: Registry) -> int:
    async with read_transaction(registry.services.engine) as conn:
        return (await store.outbox_counts(conn)).pending


async def pending_is_zero(registry: Registry) -> bool:
    return await pending(registry) == 0


def round_done(mock: Mock) -> bool:
    """Whether the last two requests stored the statistics of yesterday and today."""
    last = mock.seen[-2:]
    return (
        len(last) == 2
        and all(s.path.startswith("/sync/v1/stats/") for s in last)
        and all(s.status == 200 for s in last)
    )


async def eventually(condition: Callable[[], Any], seconds: float) -> bool:
    """Poll ``condition`` (sync or async) every 20 ms for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.02)
    return False


@contextlib.asynccontextmanager
async def running(sync: SyncWorker) -> AsyncIterator[asyncio.Event]:
    """``sync.run`` in the background until the block ends; it must then stop
    within a second, whatever it was waiting for."""
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop, idle=0.05))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 1.0)


def counted(outcome: str) -> float:
    return float(SYNC_RETRY_AFTER.labels(outcome)._value.get())


async def seed(registry: Registry, admin: Actor, count: int) -> None:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    await register(registry, admin, prefix, "ra", count)


async def assert_all_delivered(registry: Registry, tmp_path: Path) -> None:
    mine = await worker_outbox(registry)
    assert mine and all(done and not parked for _, _, done, parked in mine)
    theirs = await top_level_events(f"sqlite+aiosqlite:///{tmp_path / 'top.db'}")
    assert [seq for seq, _, _ in theirs] == [seq for seq, _, _, _ in mine]  # each once


# --- waiting as asked -------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    ("form", "asked"),
    [("seconds", 1.0), ("date", 1.5)],
)
async def test_nothing_is_sent_before_the_time_asked(
    registry: Registry,
    admin: Actor,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    form: str,
    asked: float,
) -> None:
    await seed(registry, admin, 8)
    before = counted("honoured")
    # seed=12: busy answers land on event batches, route pulls and statistics alike
    # (the draws follow the worker's fixed order of requests).
    spec = f"busy=0.3,retry_after={asked},retry_format={form},seed=12"
    caplog.set_level(logging.WARNING, logger="idnode.sync")
    async with mock_toplevel(tmp_path, spec) as mock, aiohttp.ClientSession() as session:
        sync = worker(registry, mock.base, session)
        sync.batch = 4  # several batches, so several chances to be told to wait
        async with running(sync):
            # The first round to get through ends with both days' statistics; then it idles.
            assert await eventually(lambda: round_done(mock), 60), mock.seen
            assert await pending(registry) == 0
    busy = mock.busy()
    assert len(busy) >= 3, mock.seen
    kinds = {s.path.rsplit("/", 1)[0] if "stats" in s.path else s.path for s in busy}
    assert {"/sync/v1/events", "/sync/v1/routes", "/sync/v1/stats"} <= kinds, kinds
    assert {s.status for s in busy} == {429, 503}
    gaps = mock.gaps_after_busy()
    assert len(gaps) == len(busy)  # every busy answer was followed by a retry
    # The worker's own first backoff is at most 0.5 s; each of these waited as asked ...
    shown = [(s.path, round(gap, 3)) for s, gap in gaps]
    assert all(gap >= asked - SLACK for _, gap in gaps), shown
    # ... and not much longer: the ask, rounded up to whole seconds by the header (a date
    # up to one more), plus at most a tenth (the spread), plus the time to answer.
    assert all(gap <= (math.ceil(asked) + 1) * 1.1 + 0.5 for _, gap in gaps), shown
    assert counted("honoured") - before == len(busy)
    lines = [r.getMessage() for r in caplog.records if "Retry-After" in r.getMessage()]
    assert len(lines) == len(busy)  # one line for each wait, not one per second of it
    assert "asking to wait" in lines[0] and "until" in lines[0]
    await assert_all_delivered(registry, tmp_path)


@sqlite_only
async def test_a_huge_ask_is_clamped(registry: Registry, admin: Actor, tmp_path: Path) -> None:
    await seed(registry, admin, 3)
    before = counted("clamped")
    spec = "busy=1,retry_after=1000000"
    async with mock_toplevel(tmp_path, spec) as mock, aiohttp.ClientSession() as session:
        sync = worker(registry, mock.base, session)
        sync.retry_after_cap = 1.0  # the hour's stand-in, to keep the test short
        async with running(sync):
            assert await eventually(lambda: len(mock.busy()) >= 3, 10), mock.seen
            mock.top.faults = Faults()  # the top-level node recovers
            assert await eventually(lambda: pending_is_zero(registry), 20)
    gaps = [gap for _, gap in mock.gaps_after_busy()][:2]
    assert gaps and all(1.0 - SLACK <= gap <= 1.0 + 0.5 for gap in gaps), gaps
    assert counted("clamped") - before >= 3
    await assert_all_delivered(registry, tmp_path)


@sqlite_only
async def test_an_unusable_ask_gets_the_own_backoff(
    registry: Registry, admin: Actor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await seed(registry, admin, 3)
    before = counted("unusable")
    caplog.set_level(logging.WARNING, logger="idnode.sync")
    spec = "busy=1,retry_after=30,retry_format=garbage"
    async with mock_toplevel(tmp_path, spec) as mock, aiohttp.ClientSession() as session:
        sync = worker(registry, mock.base, session)
        sync.backoff.rng = random.Random(2)
        async with running(sync):
            # Full jitter from 0.5 s doubling: three retries well within the 30 s "asked".
            assert await eventually(lambda: len(mock.busy()) >= 4, 8), mock.seen
            mock.top.faults = Faults()
            assert await eventually(lambda: pending_is_zero(registry), 20)
    gaps = [gap for _, gap in mock.gaps_after_busy()][:3]
    assert all(gap <= 0.5 * 2**i + 0.5 for i, gap in enumerate(gaps)), gaps
    assert counted("unusable") - before >= 4
    assert any("unusable Retry-After 'soon, maybe'" in r.getMessage() for r in caplog.records)
    async with read_transaction(registry.services.engine) as conn:
        assert asked_wait(await store.sync_state(conn)) is None  # not the top-level's schedule
    await assert_all_delivered(registry, tmp_path)


@sqlite_only
async def test_a_stop_ends_an_hour_long_wait_and_nothing_is_lost(
    registry: Registry, admin: Actor, tmp_path: Path
) -> None:
    await seed(registry, admin, 5)
    spec = "busy=1,retry_after=3600"
    async with mock_toplevel(tmp_path, spec) as mock, aiohttp.ClientSession() as session:
        sync = worker(registry, mock.base, session)
        stop = asyncio.Event()
        task = asyncio.create_task(sync.run(stop, idle=0.05))
        try:
            assert await eventually(lambda: mock.busy(), 10)
            assert await eventually(lambda: waiting(registry), 5)
            async with read_transaction(registry.services.engine) as conn:
                until = asked_wait(await store.sync_state(conn))
            assert until is not None  # kept for `idnode sync status`
            assert 3600 - 5 <= parse_iso(until) - time.time() <= 3600
            await asyncio.sleep(0.5)
            assert len(mock.seen) == 1  # and nothing more was sent meanwhile
        finally:
            stop.set()
            started = time.monotonic()
            await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 0.5
        # The top-level node is back, and a worker started again delivers everything.
        mock.top.faults = Faults()
        again = worker(registry, mock.base, session)
        async with running(again):
            assert await eventually(lambda: pending_is_zero(registry), 20)
            assert await eventually(lambda: not_waiting(registry), 5)
    await assert_all_delivered(registry, tmp_path)


async def waiting(registry: Registry) -> bool:
    async with read_transaction(registry.services.engine) as conn:
        return asked_wait(await store.sync_state(conn)) is not None


async def not_waiting(registry: Registry) -> bool:
    async with read_transaction(registry.services.engine) as conn:
        return (await store.sync_state(conn)).get("waiting_until") == ""


def parse_iso(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


# --- the rules, without a network ---------------------------------------------------


def test_retry_after_is_read_in_both_forms() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("9" * 5000, now) == math.inf  # for the worker to clamp
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == 90.0
    moment = calendar.timegm((2027, 1, 15, 8, 0, 0))
    for form in (
        "Fri, 15 Jan 2027 08:00:00 GMT",  # IMF-fixdate
        "Friday, 15-Jan-27 08:00:00 GMT",  # RFC 850, obsolete but to be read
        "Fri Jan 15 08:00:00 2027",  # asctime, no zone: GMT
    ):
        assert parse_retry_after(form, moment - 42.5) == 42.5, form
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0  # already past
    for garbage in ("soon", "", "1.5", "-1", "0x10", "1e3", "²", "Fri, 31 Feb 2027 08:00:00 GMT"):
        assert parse_retry_after(garbage, now) is None, garbage


def _unavailable(header: str | None, seconds: float | None) -> Unavailable:
    exc = Unavailable("top-level node answered 503 busy")
    exc.retry_after, exc.retry_after_header = seconds, header
    return exc


def test_the_wait_is_kept_between_the_backoff_base_and_an_hour() -> None:
    rng = random.Random(4)
    for _ in range(50):
        huge = wait_after(_unavailable("99999999", 99999999.0), Backoff(rng=rng))
        assert (huge.seconds, huge.outcome) == (MAX_RETRY_AFTER_SECONDS, "clamped")
        endless = wait_after(_unavailable("9" * 30, math.inf), Backoff(rng=rng))
        assert (endless.seconds, endless.outcome) == (MAX_RETRY_AFTER_SECONDS, "clamped")
        now = wait_after(_unavailable("0", 0.0), Backoff(rng=rng))
        assert 0.5 <= now.seconds <= 0.55 and now.outcome == "clamped"  # the backoff's base
        asked = wait_after(_unavailable("10", 10.0), Backoff(rng=rng))
        assert 10.0 <= asked.seconds <= 11.0 and asked.outcome == "honoured" and asked.asked
        own = wait_after(_unavailable("soon", None), Backoff(rng=rng))
        assert own.seconds <= 0.5 and own.outcome == "unusable" and not own.asked
        plain = wait_after(_unavailable(None, None), Backoff(rng=rng))
        assert plain.seconds <= 0.5 and plain.outcome is None
    grown = Backoff(rng=rng)
    wait_after(_unavailable("1", 1.0), grown)
    assert grown.attempt == 1  # an asked wait still counts as an attempt


def test_busy_fault_spec_is_checked() -> None:
    faults = Faults.parse("busy=0.5,retry_after=2.5,retry_format=date,seed=1")
    assert (faults.busy, faults.retry_after, faults.retry_format) == (0.5, 2.5, "date")
    assert faults.retry_after_header(1_800_000_000.2) == formatdate(1_800_000_003, usegmt=True)
    assert Faults.parse("busy=1,retry_after=1.2").retry_after_header(0) == "2"
    assert Faults.parse("busy=1,retry_format=none").retry_after_header(0) is None
    for bad in ("busy=2", "busy=-0.1", "busy=nan", "retry_after=inf", "retry_format=soon", "x=1"):
        with pytest.raises(ValueError):
            Faults.parse(bad)


# --- real processes: `idnode toplevel --faults busy=…` and `idnode sync` --------------------


@pytest.fixture
def node_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        "IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'node.db'}",
        "IDNODE_BOOTSTRAP_ADMIN": "AKOPS:ops-secret",
        "IDNODE_ALLOW_PLAIN_HTTP_AUTH": "true",
        "IDNODE_SYNC_TIMEOUT": "2",
    }
    assert run_idnode("migrate", cwd=tmp_path, env=env).returncode == 0
    yield env


@pytest.mark.slow
def test_sigterm_during_an_asked_wait_then_everything_arrives(
    tmp_path: Path, node_env: dict[str, str]
) -> None:
    seed_offline(tmp_path, node_env, 40)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    top = toplevel(tmp_path, port, faults="busy=1,retry_after=600,retry_format=date")
    try:
        sync = sync_process(tmp_path, node_env, url)
        try:
            status = ""

            def shown() -> bool:
                nonlocal status
                status = run_idnode("sync", "status", cwd=tmp_path, env=node_env).stdout
                return "(top-level node asked)" in status

            assert wait_until(shown, 60), status
            line = next(x for x in status.splitlines() if x.startswith("waiting until "))
            assert 590 <= parse_iso(line.split()[2]) - time.time() <= 700, line
            started = time.monotonic()
            sync.send_signal(signal.SIGTERM)
            assert sync.wait(10) == 0
            assert time.monotonic() - started < 3  # not after the 600 s asked
        finally:
            if sync.poll() is None:
                sync.kill()
                sync.wait(10)
        assert outbox(tmp_path / "node.db")[1] >= 40  # nothing went up while busy
    finally:
        assert top.stop() == 0
    top = toplevel(tmp_path, port)  # the top-level node back, without trouble
    try:
        sync_until_drained(tmp_path, node_env, url, 60)
    finally:
        assert top.stop() == 0
    assert_exactly_once(tmp_path)
    status = run_idnode("sync", "status", cwd=tmp_path, env=node_env).stdout
    assert "backlog 0 events" in status and "waiting until" not in status
