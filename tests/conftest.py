"""Shared fixtures: real databases (SQLite and PostgreSQL), the registry,
the real aiohttp application, the native protocol's service and the DNS zone on
loopback ports.

Each test gets a database of its own: a copy of a migrated SQLite file, or
a PostgreSQL database cloned from a migrated template database. PostgreSQL
is found through ``IDNODE_TEST_PG`` (default: the local server, user
postgres); ``scripts/test.sh`` makes sure it runs.

A test that starts a node process (``idnode serve``, ``demo``, ``toplevel`` or
``sync``) must be marked ``slow``; one that is not fails at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from idnode.config import Config, Endpoint
from idnode.listen import bind_pair
from idnode.node import Node
from idnode.servers import build_http_app
from idnode.site import node_site
from registry.db import create_engine, migrate
from registry.dnsnames import ZoneNames
from registry.grammar import Grammar
from registry.secrets import NodeKey, load_or_create_server_key
from registry.services import Actor, Registry, Services
from registry.tokens import TokenIssuer
from resolver.dns import server as srv
from resolver.dns.rrl import RateLimit
from resolver.dns.service import DnsService
from resolver.resolution import Resolver
from tests.dns_zone import NO_LIMIT, RUNNING, ZONE, Starter, Zone, seed
from tests.factories import ADMIN_AK, ADMIN_SK, NODE_PREFIX, OID_ARC
from tests.native_node import Native, native_server

PG_SERVER = os.environ.get("IDNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
PG_TEMPLATE = f"idnode_test_template_{os.getpid()}"
_counter = itertools.count()
NODE_COMMANDS = frozenset({"serve", "demo", "toplevel", "sync"})
"""idnode commands that run a node or its sync worker: the tests that start one are slow."""
_started: list[str] = []
"""The node commands started since the running test's setup began."""


def _watch_processes(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook: note every idnode node command a process is started with."""
    if event != "subprocess.Popen":
        return
    argv = args[1]
    words = [argv] if isinstance(argv, str | bytes | os.PathLike) else list(argv or ())
    texts = [os.fsdecode(w) if isinstance(w, bytes | os.PathLike) else str(w) for w in words]
    for at, word in enumerate(texts):
        module = word == "idnode" and at > 0 and texts[at - 1] == "-m"
        if (module or os.path.basename(word) == "idnode") and NODE_COMMANDS & set(texts[at:]):
            _started.append(" ".join(texts[at:])[:200])
            return


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(_watch_processes)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _started.clear()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _started and item.get_closest_marker("slow") is None:
        started = "; ".join(_started)
        _started.clear()
        pytest.fail(
            f"{item.nodeid} starts a node process ({started}) but is not marked slow: "
            "add @pytest.mark.slow (or a module-level pytestmark)",
            pytrace=False,
        )


def _asyncpg_url(database: str) -> str:
    return f"{PG_SERVER}/{database}"


def _sqlalchemy_pg_url(database: str) -> str:
    return _asyncpg_url(database).replace("postgresql://", "postgresql+asyncpg://", 1)


async def _pg_admin(*statements: str) -> None:
    # Maintenance commands run from the test database scripts/test.sh creates.
    conn = await asyncpg.connect(_asyncpg_url("idnode_test"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate_url(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    asyncio.run(_migrate_url(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    try:
        asyncio.run(
            _pg_admin(
                f"DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)",
                f"CREATE DATABASE {PG_TEMPLATE}",
            )
        )
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {PG_SERVER}/idnode_test is not usable ({exc}); "
            "run scripts/test.sh, which installs, starts and prepares it"
        )
    asyncio.run(_migrate_url(_sqlalchemy_pg_url(PG_TEMPLATE)))
    yield PG_TEMPLATE
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)"))


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database at the current schema."""
    name = f"idnode_test_{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    yield _sqlalchemy_pg_url(name)
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "idnode.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def node_key() -> NodeKey:
    return NodeKey.generate()


@pytest.fixture
async def registry(database_url: str, node_key: NodeKey) -> AsyncIterator[Registry]:
    engine = create_engine(database_url)
    # The node's default grammar: OIDs under OID_ARC name identifiers of 88.100.N.
    grammar = Grammar(oid_arc=OID_ARC, node_prefix=NODE_PREFIX)
    reg = Registry(Services(engine, node_prefix=NODE_PREFIX, node_key=node_key, grammar=grammar))
    await reg.ensure_node()
    await reg.accounts.bootstrap_admin(ADMIN_AK, ADMIN_SK)
    try:
        yield reg
    finally:
        await reg.accounts.drain()
        await engine.dispose()


@pytest.fixture
async def admin(registry: Registry) -> Actor:
    principal = (await registry.accounts.login(ADMIN_AK, ADMIN_SK)).principal
    return Actor(principal=principal, remote="test")


@dataclass
class ApiClient:
    """Talks HTTP to the real application on a loopback port."""

    base: str
    session: aiohttp.ClientSession
    token: str | None = None
    app: web.Application | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        async with self.session.request(
            method, self.base + path, json=json, data=data, headers=hdrs
        ) as resp:
            body = await resp.read()
            try:
                import json as jsonlib

                return resp.status, jsonlib.loads(body)
            except ValueError:
                return resp.status, body.decode("utf-8", "replace")

    async def login(self, username: str, password: str) -> str:
        status, body = await self.call(
            "POST", "/identity/token", json={"username": username, "password": password}
        )
        assert status == 200 and body["status"] == 1, body
        return str(body["data"]["token"])


@pytest.fixture
async def api(registry: Registry, node_key: NodeKey, database_url: str) -> AsyncIterator[ApiClient]:
    config = Config(database_url=database_url, allow_plain_http_auth=True)
    node = Node(config, registry.engine, registry, TokenIssuer(node_key), Resolver(registry))
    registry.services.site = node_site(config, Endpoint("127.0.0.1", 8000), tls=False)
    app = build_http_app(node)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    site = web.SockSite(runner, sock)
    await site.start()
    port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        client = ApiClient(f"http://127.0.0.1:{port}", session, app=app)
        client.token = await client.login(ADMIN_AK, ADMIN_SK)
        yield client
    await runner.cleanup()


@pytest.fixture
async def native(registry: Registry, tmp_path: Path) -> AsyncIterator[Native]:
    """The native protocol's service on loopback UDP and TCP, over ``registry``."""
    async with native_server(registry, load_or_create_server_key(tmp_path / "server.pem")) as it:
        yield it


@pytest.fixture
async def start_zone(registry: Registry) -> AsyncIterator[Starter]:
    """Starts the DNS zone over ``registry`` on loopback (with a rate limit, on another
    address, as asked); every zone started is stopped after the test."""
    running = RUNNING

    async def start(rate_limit: RateLimit = NO_LIMIT, host: str = "127.0.0.1") -> Zone:
        resolver = Resolver(registry)
        names = ZoneNames.of(ZONE)
        service = DnsService(resolver, names, ns_address="127.0.0.1")
        await service.start()
        tcp_sock, udp_sock = bind_pair(Endpoint(host, 0))
        port = tcp_sock.getsockname()[1]
        running.append(
            await srv.start(service, tcp_sock, udp_sock, rate_limit=rate_limit, idle=1.0)
        )
        return Zone(host, port, service, registry, resolver, names)

    yield start
    for listeners in running:
        await listeners.close()
    running.clear()


@pytest.fixture
async def zone(start_zone: Starter) -> Zone:
    return await start_zone()


@pytest.fixture
async def seeded_zone(zone: Zone, admin: Actor) -> Zone:
    await seed(zone, admin)
    return zone


class TopLevelAt(NamedTuple):
    base: str
    """The sync API's base URL."""
    handle: Endpoint
    """Where it answers native prefix lookups (UDP and TCP)."""


@contextlib.asynccontextmanager
async def running_toplevel(database_url: str) -> AsyncIterator[TopLevelAt]:
    """The mock top-level node on loopback ports — the sync API over HTTP and
    prefix lookups over the native protocol — with its store at ``database_url``."""
    from aiohttp import web

    import resolver.handle.server
    from idnode.listen import bind_pair, bound
    from sync.toplevel import ledger
    from sync.toplevel.app import TopLevel, build_app
    from sync.toplevel.native import TopLevelHandle

    engine = create_engine(database_url)
    await ledger.create(engine)
    runner = web.AppRunner(build_app(TopLevel(engine)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    http = Endpoint("127.0.0.1", runner.addresses[0][1])
    tcp, udp = bind_pair(Endpoint("127.0.0.1", 0))
    handle = bound(tcp)
    site = node_site(Config(), http, tls=False, handle=handle, description="top-level")
    listeners = await resolver.handle.server.start(TopLevelHandle(engine, site), tcp, udp)
    try:
        yield TopLevelAt(f"http://{http}", handle)
    finally:
        await listeners.close()
        await runner.cleanup()
        await engine.dispose()
