"""The sync worker against a real mock top-level node on loopback: delivery in
order and exactly once, parking, backoff while the node is away, routes pulled."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from metrics.instruments import SYNC_PARKED_BACKLOG
from registry import schema, store
from registry.db import create_engine, read_transaction
from registry.models import HandleValue
from registry.secrets import NodeKey
from registry.services import Actor, Registry
from resolver import codes as rc
from resolver.resolution import Resolver, Status
from sync import auth
from sync.client import SyncClient
from sync.toplevel import ledger
from sync.worker import Backoff, SyncWorker, Unavailable
from tests.conftest import ApiClient, _pg_admin, running_toplevel
from tests.factories import hosted_enterprise

SITE = b"\x00\x00\x00\x01site"


def worker(registry: Registry, base: str, session: aiohttp.ClientSession) -> SyncWorker:
    services = registry.services
    client = SyncClient(base, "88.100", auth.signing_key(services.node_key), session=session)
    return SyncWorker(services.engine, client, services=services, site=SITE, name="idnode 88.100")


async def register(registry: Registry, admin: Actor, prefix: str, tag: str, count: int) -> None:
    for i in range(count):
        await registry.handles.create(
            admin, f"{prefix}/{tag}-{i}", [HandleValue(1, "URL", b"u")], overwrite=False
        )


async def hosted_with_records(registry: Registry, admin: Actor, tag: str, count: int) -> None:
    """Enterprise 1 with its prefix 88.100.1 hosted here and ``count`` records under it."""
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    await register(registry, admin, prefix, tag, count)


async def top_level_events(url: str) -> list[tuple[int, str, str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(ledger.events.c.seq, ledger.events.c.event, ledger.events.c.subject)
                .where(ledger.events.c.node == "88.100")
                .order_by(ledger.events.c.seq)
            )
            return [(r.seq, r.event, r.subject) for r in rows]
    finally:
        await engine.dispose()


async def drained(registry: Registry, *, polls: int) -> None:
    """Wait until no event waits in the outbox, looking every 50 ms, ``polls`` times
    at the most."""
    for _ in range(polls):
        await asyncio.sleep(0.05)
        async with read_transaction(registry.services.engine) as conn:
            if (await store.outbox_counts(conn)).pending == 0:
                return


@pytest.fixture
def top_url(tmp_path: Path) -> str:
    """The database of the mock top-level node a test runs: in the test's directory."""
    return f"sqlite+aiosqlite:///{tmp_path / 'top.db'}"


async def outbox(registry: Registry) -> list[tuple[int, str, bool, bool]]:
    async with read_transaction(registry.services.engine) as conn:
        rows = await conn.execute(
            select(
                schema.outbox.c.seq,
                schema.outbox.c.event,
                schema.outbox.c.delivered_at.is_not(None),
                schema.outbox.c.parked,
            ).order_by(schema.outbox.c.seq)
        )
        return [(r[0], r[1], bool(r[2]), bool(r[3])) for r in rows]


async def test_everything_arrives_once_and_in_order(
    registry: Registry, admin: Actor, top_url: str
) -> None:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    for i in range(30):
        await registry.handles.create(
            admin,
            f"{prefix}/item-{i}",
            [HandleValue(1, "URL", b"https://x/%d" % i)],
            overwrite=False,
        )
    await registry.handles.create(
        admin, "1.2.156.86.1.1.9", [HandleValue(1, "URL", b"https://o")], overwrite=False
    )
    async with running_toplevel(top_url) as (base, _), aiohttp.ClientSession() as session:
        sync = worker(registry, base, session)
        sync.batch = 7  # several batches
        delivered = await sync.round()
        again = await sync.round()  # nothing left: nothing sent
    mine = await outbox(registry)
    assert delivered == len(mine) and again == 0
    assert all(done and not parked for _, _, done, parked in mine)
    theirs = await top_level_events(top_url)
    assert [seq for seq, _, _ in theirs] == [seq for seq, _, _, _ in mine]
    assert ("identifier.created", "1.2.156.86.1.1.9") in [(e, s) for _, e, s in theirs]


async def test_a_restarted_worker_sends_again_and_nothing_doubles(
    registry: Registry, admin: Actor, top_url: str
) -> None:
    await hosted_with_records(registry, admin, "r", 10)
    async with running_toplevel(top_url) as (base, _), aiohttp.ClientSession() as session:
        await worker(registry, base, session).round()
        # As if the worker died after sending but before recording the answer:
        async with registry.services.engine.begin() as conn:
            await conn.execute(schema.outbox.update().values(delivered_at=None))
        fresh = worker(registry, base, session)
        assert await fresh.round() == len(await outbox(registry))
    theirs = await top_level_events(top_url)
    assert len(theirs) == len({seq for seq, _, _ in theirs}) == len(await outbox(registry))


async def test_refused_events_are_parked_not_dropped(
    registry: Registry, admin: Actor, top_url: str
) -> None:
    await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    async with running_toplevel(top_url) as (base, _), aiohttp.ClientSession() as session:
        sync = worker(registry, base, session)
        await sync.round()
        # An event the top-level node will refuse (not under 88.100), made the way
        # the registry makes events, so the outbox stays gap-free.
        async with registry.services.change(admin) as change:
            await change.emit("identifier.created", "88.200.1/not-ours", {"handle": "x"})
        await registry.handles.create(
            admin, "88.100.1/after", [HandleValue(1, "URL", b"u")], overwrite=False
        )
        await sync.round()
    assert SYNC_PARKED_BACKLOG._value.get() == 1  # exported for the alert on parked events
    rows = await outbox(registry)
    parked = [(seq, event) for seq, event, _, is_parked in rows if is_parked]
    assert [event for _, event in parked] == ["identifier.created"]
    assert all(done for seq, _, done, is_parked in rows if not is_parked)  # later ones went on
    async with read_transaction(registry.services.engine) as conn:
        counts = await store.outbox_counts(conn)
        error = (
            await conn.execute(
                select(schema.outbox.c.last_error).where(schema.outbox.c.parked.is_(True))
            )
        ).scalar_one()
        assert (counts.parked, counts.pending) == (1, 0)
        unparked = await store.unpark(conn)
    assert "foreign-prefix" in error and unparked == 1


async def test_top_level_node_away_then_back(
    registry: Registry, admin: Actor, top_url: str
) -> None:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    async with aiohttp.ClientSession() as session:
        away = worker(registry, "http://127.0.0.1:9", session)  # nothing listens on port 9
        with pytest.raises(Unavailable):
            await away.round()
        await register(registry, admin, prefix, "w", 5)
        async with read_transaction(registry.services.engine) as conn:
            backlog = await store.outbox_counts(conn)
        assert backlog.delivered == 0 and backlog.pending == len(await outbox(registry))
        assert backlog.oldest_pending is not None and backlog.oldest_pending.tzinfo is not None
        async with running_toplevel(top_url) as (base, _):
            sync = worker(registry, base, session)
            stop = asyncio.Event()
            task = asyncio.create_task(sync.run(stop, idle=0.05))
            await drained(registry, polls=100)
            stop.set()
            await asyncio.wait_for(task, 10)
    assert len(await top_level_events(top_url)) == len(await outbox(registry))


async def test_routes_of_other_nodes_are_pulled(
    registry: Registry, admin: Actor, top_url: str
) -> None:
    async with running_toplevel(top_url) as (base, _), aiohttp.ClientSession() as session:
        other = SyncClient(base, "88.200", auth.signing_key(NodeKey.generate()), session=session)
        assert (await other.register(b"site-200", "other")).status == 200
        events = [
            {"seq": i, "event": "prefix.allocated", "subject": f"88.200.{i}", "payload": {}}
            for i in range(1, 4)
        ]
        await other.call("POST", "/sync/v1/events", {"node": "88.200", "events": events})
        sync = worker(registry, base, session)
        await sync.round()
        async with read_transaction(registry.services.engine) as conn:
            routes = await store.foreign_routes(conn)
            state = await store.sync_state(conn)
        assert [r.prefix for r in routes] == ["88.200", "88.200.1", "88.200.2", "88.200.3"]
        assert all(r.node == "88.200" and r.site == b"site-200" for r in routes)
        assert int(state["routes_next"]) > 0
        assert await sync.pull_routes() == 0  # incremental: nothing new
    # With the routes pulled, other nodes' names resolve to a referral to where they live.
    resolver = Resolver(registry)
    handle = await resolver.resolve(resolver.parse("88.200.2/anything"))
    assert handle.status is Status.REFERRAL
    assert [(v.type, v.data) for v in handle.referral] == [("HS_SITE", b"site-200")]
    assert handle.referral_handle == "0.NA/88.200.2"
    derived = await resolver.resolve(resolver.parse("0.NA/88.200.9"))  # under the node's prefix
    assert derived.status is Status.REFERRAL and derived.referral_handle == "0.NA/88.200"
    assert [v.type for v in derived.referral] == ["HS_SITE.PREFIX"]
    unknown = await resolver.resolve(resolver.parse("88.300.1/x"))
    assert unknown.status is Status.NOT_HERE
    async with read_transaction(registry.services.engine) as conn:
        own = await conn.execute(
            select(func.count())
            .select_from(schema.foreign_routes)
            .where(schema.foreign_routes.c.node == "88.100")
        )
        assert own.scalar_one() == 0  # our own routes are not foreign


def test_backoff_is_bounded_full_jitter() -> None:
    backoff = Backoff(rng=random.Random(1))
    waits = [backoff.next() for _ in range(12)]
    assert all(0 <= w <= min(60.0, 0.5 * 2**i) for i, w in enumerate(waits))
    assert max(waits[8:]) <= 60.0 and max(waits[8:]) > 5  # capped, yet grown
    backoff.reset()
    assert backoff.next() <= 0.5


async def test_verify_resends_what_the_top_level_node_lost(
    registry: Registry, admin: Actor, top_url: str
) -> None:
    await hosted_with_records(registry, admin, "v", 6)
    async with running_toplevel(top_url) as (base, _), aiohttp.ClientSession() as session:
        sync = worker(registry, base, session)
        await sync.round()
        assert await sync.verify() == {}  # both sides agree
        # The top-level node loses two records and holds one the node never had.
        engine = create_engine(top_url)
        async with engine.begin() as conn:
            await conn.execute(
                ledger.backups.delete().where(
                    ledger.backups.c.name.in_(["88.100.1/v-1", "88.100.1/v-4"])
                )
            )
            await conn.execute(
                ledger.backups.insert().values(
                    node="88.100", name_key="88.100.1/ghost", name="88.100.1/ghost", seq=1,
                    record="{}", deleted=False,
                )
            )  # fmt: skip
        await engine.dispose()
        assert await sync.verify() == {"88.100.1": (2, 1)}
        await sync.round()  # the fixes are ordinary outbox events, delivered as such
        assert await sync.verify() == {}
        async with aiohttp.ClientSession() as probe:
            summary = await SyncClient(
                base, "88.100", auth.signing_key(registry.services.node_key), session=probe
            ).call("GET", "/sync/v1/nodes/88.100/summary")
        assert summary.body["prefixes"]["88.100.1"]["identifiers"] == 6


async def test_foreign_referrals_over_rest(registry: Registry, api: ApiClient) -> None:
    async with registry.services.engine.begin() as conn:
        await store.put_foreign_route(
            conn, "88.200", "88.200", b"site-200", hosted=True, seq=1, deleted=False
        )
    status, body = await api.call("GET", "/api/handles/88.200.5/item")
    assert (status, body["responseCode"]) == (300, rc.RC_SERVICE_REFERRAL)
    assert body["values"][0]["type"] == "HS_SITE"
    _, body = await api.call("GET", "/api/handles/99.1/item")  # no route known
    assert body["responseCode"] == rc.RC_SERVER_NOT_RESP  # "doesn't live here"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_registry_away_pauses_the_worker_and_nothing_is_lost(
    registry: Registry, admin: Actor, top_url: str, database_url: str
) -> None:
    """A database restart or failover under the worker: it waits and goes on, where
    it used to end until the node restarted."""
    await hosted_with_records(registry, admin, "db", 5)
    name = make_url(database_url).database
    closed = (
        f"ALTER DATABASE {name} ALLOW_CONNECTIONS false",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )
    async with aiohttp.ClientSession() as session, running_toplevel(top_url) as (base, _):
        sync = worker(registry, base, session)
        sync.backoff = Backoff(base=0.1, cap=0.5)
        await _pg_admin(*closed)
        stop = asyncio.Event()
        task = asyncio.create_task(sync.run(stop, idle=0.05))
        try:
            await asyncio.sleep(1.5)
            assert not task.done(), task.exception() if task.done() else None
            assert await top_level_events(top_url) == []
        finally:
            await _pg_admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        await drained(registry, polls=200)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert len(await top_level_events(top_url)) == len(await outbox(registry)) >= 6
