"""A database that goes away: the registry says so with one exception,
``StorageUnavailable`` (the driver's error as its cause), and every front end
answers it in its own words — native RC 3, REST and the redirect proxy 503, the
SNMS envelope status -4 with HTTP 503, DNS SERVFAIL, the mock top-level node
RC 3 — while the refusals of data the services answer themselves pass as they
are, and a read replica that fails still hands its reads to the primary.

The database goes away for real: a PostgreSQL database is dropped (its
connections terminated), a SQLite file is removed with its folder and the
connections the process held are closed, so that the next one must open it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

import resolver.handle.server
from idnode.config import Config, Endpoint
from idnode.listen import bind_pair, bound
from idnode.node import Node
from idnode.servers import Servers
from idnode.site import node_site
from loadtest.refdns import free_port
from registry.db import (
    ReplicaReads,
    create_engine,
    create_read_engine,
    read_transaction,
    read_with,
    write_transaction,
)
from registry.errors import StorageUnavailable
from resolver import codes as rc
from resolver.handle import client as cl
from resolver.handle import codec as c
from sync.toplevel import ledger
from sync.toplevel.native import TopLevelHandle
from tests.conftest import PG_SERVER, ApiClient
from tests.factories import ADMIN_AK, ADMIN_SK, node_on_loopback


@dataclass
class Vanishing:
    """A migrated database, and how to make it go away."""

    url: str
    folder: Path | None
    """SQLite: the folder the file lives in (removed with it); None for PostgreSQL."""

    async def away(self, *holders: object) -> None:
        """The database is gone; ``holders`` (engines, read engines) drop the
        connections they held, as a process does when the server ends them."""
        if self.folder is not None:
            shutil.rmtree(self.folder)
        else:
            name = make_url(self.url).database
            admin = await asyncpg.connect(f"{PG_SERVER}/idnode_test")
            try:
                await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            finally:
                await admin.close()
        for holder in holders:
            await holder.dispose()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def vanishing(request: pytest.FixtureRequest, tmp_path: Path) -> Vanishing:
    if request.param == "sqlite":
        folder = tmp_path / "db"
        folder.mkdir()
        shutil.copy(request.getfixturevalue("sqlite_template"), folder / "idnode.db")
        return Vanishing(f"sqlite+aiosqlite:///{folder / 'idnode.db'}", folder)
    return Vanishing(str(request.getfixturevalue("pg_database")), None)


@pytest.fixture(autouse=True)
async def _aiosqlite_threads_end() -> AsyncIterator[None]:
    """aiosqlite stops the thread of a connection that failed to open without
    waiting for it: let those threads end while this test's loop is still open."""
    yield
    for _ in range(50):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


def _carries_the_drivers_error(exc: StorageUnavailable) -> None:
    assert isinstance(exc.__cause__, DBAPIError | OSError), repr(exc.__cause__)
    reason = str(exc)
    assert reason and "\n" not in reason, reason


# --- where the registry touches the database -------------------------------------------


async def test_the_transactions_and_the_resolution_reads_raise_storage_unavailable(
    vanishing: Vanishing,
) -> None:
    engine = create_engine(vanishing.url)
    reads = create_read_engine(vanishing.url)
    try:
        async with read_transaction(engine) as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        assert await read_with(reads, _one) == 1
        await vanishing.away(engine, reads)
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: _in(read_transaction(engine)),
            lambda: _in(write_transaction(engine)),
            lambda: read_with(reads, _one),  # the resolution path's own read engine
            lambda: read_with(engine, _one),
        ]
        for attempt in attempts:
            with pytest.raises(StorageUnavailable) as gone:
                await attempt()
            _carries_the_drivers_error(gone.value)
    finally:
        await reads.dispose()
        await engine.dispose()


async def _one(conn: object) -> int:
    return int((await conn.execute(text("SELECT 1"))).scalar())  # type: ignore[attr-defined]


async def _in(transaction: contextlib.AbstractAsyncContextManager[object]) -> None:
    async with transaction as conn:
        await _one(conn)


@pytest.mark.parametrize("refusal", [IntegrityError, DataError])
async def test_refusals_of_the_data_pass_as_they_are(
    database_url: str, refusal: type[DBAPIError]
) -> None:
    """The services answer these themselves (a conflicting write, a refused value)."""
    engine = create_engine(database_url)
    try:
        with pytest.raises(refusal):
            async with write_transaction(engine):
                raise refusal("INSERT", None, Exception("refused"))
    finally:
        await engine.dispose()


async def test_a_failed_replica_reads_from_the_primary_until_the_primary_goes_too(
    pg_database: str,
) -> None:
    vanishing = Vanishing(pg_database, None)
    replica_url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    reads = create_read_engine(pg_database, replica_url=replica_url)
    assert isinstance(reads, ReplicaReads)
    try:
        assert await read_with(reads, _one) == 1  # the replica refused; the primary answered
        assert not reads.using_replica
        await vanishing.away(reads)
        with pytest.raises(StorageUnavailable) as gone:
            await read_with(reads, _one)
        _carries_the_drivers_error(gone.value)
    finally:
        await reads.dispose()


# --- every front end, on a node whose database goes away -------------------------------


@dataclass
class Running:
    node: Node
    servers: Servers
    session: aiohttp.ClientSession

    async def http(self, method: str, path: str, **kw: object) -> tuple[int, bytes]:
        url = f"http://{self.servers.http}{path}"
        async with self.session.request(method, url, allow_redirects=False, **kw) as resp:  # type: ignore[arg-type]
            return resp.status, await resp.read()

    async def native(self, name: str, *, udp: bool) -> c.Message:
        at = self.servers.handle
        asked = cl.resolution(name)
        if udp:
            return await cl.udp_call(at.host, at.port, asked)
        return await cl.tcp_call(at.host, at.port, asked)

    async def dns(self, name: str) -> dns.message.Message:
        qname = self.node.config.dns_names().of_identifier(self.node.resolver.parse(name))
        query = dns.message.make_query(qname, "TXT")
        at = self.servers.dns
        return await dns.asyncquery.udp(query, at.host, port=at.port, timeout=5)


@pytest.fixture
async def running(vanishing: Vanishing, tmp_path: Path) -> AsyncIterator[Running]:
    async with (
        node_on_loopback(vanishing.url, tmp_path) as (node, servers),
        aiohttp.ClientSession() as session,
    ):
        yield Running(node, servers, session)


LOGIN = {"username": ADMIN_AK, "password": ADMIN_SK}


async def test_every_front_end_answers_a_database_gone_in_its_own_words(
    running: Running, vanishing: Vanishing
) -> None:
    prefix = running.node.config.node_prefix
    # Up: each front end answers (names asked here are not asked again below,
    # where an answer kept in a cache would hide the outage).
    assert (await running.http("POST", "/identity/token", json=LOGIN))[0] == 200
    assert (await running.native(f"{prefix}/up", udp=True)).header.response_code == 100
    assert (await running.http("GET", f"/api/handles/{prefix}/up"))[0] == 404
    assert (await running.http("GET", f"/{prefix}/up-page"))[0] == 404
    assert (await running.dns(f"{prefix}/up")).rcode() == dns.rcode.NXDOMAIN

    await running.node.registry.accounts.drain()  # no login bookkeeping left in flight
    await vanishing.away(running.node.db, running.node.resolver.db)

    for udp in (True, False):
        answer = await running.native(f"{prefix}/gone-{udp}", udp=udp)
        assert answer.header.response_code == rc.RC_SERVER_TOO_BUSY
        assert cl.error_text(answer) == "storage unavailable"

    status, body = await running.http("GET", f"/api/handles/{prefix}/gone")
    assert status == 503
    assert json.loads(body) == {
        "responseCode": rc.RC_SERVER_TOO_BUSY,
        "handle": f"{prefix}/gone",
        "message": "storage unavailable",
    }

    status, body = await running.http("GET", f"/{prefix}/gone-page")
    assert status == 503
    assert "Storage is unavailable; try again shortly." in body.decode()

    status, body = await running.http("POST", "/identity/token", json=LOGIN)
    assert status == 503
    assert json.loads(body) == {
        "message": "系统繁忙 (database unavailable)",
        "status": -4,
        "data": None,
    }

    reply = await running.dns(f"{prefix}/gone")
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer


async def test_the_top_level_node_answers_rc3_when_its_route_table_is_gone(
    vanishing: Vanishing,
) -> None:
    engine = create_engine(vanishing.url)
    await ledger.create(engine)
    tcp, udp = bind_pair(Endpoint("127.0.0.1", 0))
    at = bound(tcp)
    site = node_site(Config(), Endpoint("127.0.0.1", 8000), tls=False, handle=at)
    listeners = await resolver.handle.server.start(TopLevelHandle(engine, site), tcp, udp)
    try:
        answer = await cl.udp_call(at.host, at.port, cl.resolution("0.NA/88.100"))
        assert answer.header.response_code == rc.RC_HANDLE_NOT_FOUND  # no such route yet
        await vanishing.away(engine)
        for call in (cl.udp_call, cl.tcp_call):
            answer = await call(at.host, at.port, cl.resolution("0.NA/88.100"))
            assert answer.header.response_code == rc.RC_SERVER_TOO_BUSY
            assert cl.error_text(answer) == "route table unavailable"
    finally:
        await listeners.close()
        await engine.dispose()


# --- a client that hangs up is no outage -----------------------------------------------


@pytest.mark.parametrize(
    ("path", "logger"),
    [("/identity/token", "idnode.api"), ("/api/handles/88.100/x", "idnode.rest")],
)
async def test_a_client_that_hangs_up_mid_body_is_no_outage_and_no_crash(
    api: ApiClient, path: str, logger: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logger)
    method = "POST" if path == "/identity/token" else "PUT"
    host, port = api.base.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        'Content-Length: 1000\r\n\r\n{"username"'.encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body
    writer.close()
    await writer.wait_closed()
    left = f"client left during {method} {path}"
    for _ in range(100):  # up to 5 s for the server to see the hang-up
        if left in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert left in caplog.text
    assert "unavailable" not in caplog.text and "unhandled" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    status, _ = await api.call("POST", "/identity/token", json=LOGIN, token="")
    assert status == 200  # and the server answers the next one
