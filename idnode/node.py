"""The composition root: the node's parts built from its configuration, its
resources opened and checked, its servers (idnode.servers) run until stopped.

A process of the node is a :class:`Node`: the registry services over the
database — built with the node's login lockout, enterprise admission and
registration limits — the resolver over them, and the per-client
guard and traffic table its front ends share. :func:`open_node` opens one,
:func:`serve` runs it with its workers (idnode.workers), the sync worker and
the metrics listener, and a SIGHUP reconfigures it (idnode.reloading)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

import aiohttp
from sqlalchemy import text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from metrics.traffic import ClientTraffic
from registry.db import (
    DatabaseError,
    Reads,
    check_schema,
    create_engine,
    create_read_engine,
    describe_error,
    migrate,
    missing_sqlite_file,
    url_for_log,
)
from registry.errors import RegistryError, StorageUnavailable
from registry.grammar import GrammarError
from registry.secrets import NodeKey
from registry.services import Registry, Services
from registry.tokens import TokenIssuer
from resolver.handle.recursion import Recursor
from resolver.limits import Guard
from resolver.resolution import Resolver
from sync.auth import signing_key
from sync.client import SyncClient
from sync.worker import SyncWorker

from .accounting import count_auth_failure, count_registrations
from .config import Config, ConfigError, Endpoint
from .health import start_metrics_listener
from .limits import client_guard, client_traffic, enterprise_admission, login_lockout
from .listen import StartupError
from .logs import AccessLogSwitch
from .reloading import reload_node
from .servers import start_servers
from .site import load_issuer
from .workers import Listeners, Workers, worker_count

log = logging.getLogger("idnode")


class Node:
    """One process's parts (see :func:`compose`)."""

    def __init__(
        self,
        config: Config,
        db: AsyncEngine,
        registry: Registry,
        tokens: TokenIssuer,
        resolver: Resolver,
        *,
        guard: Guard | None = None,
        traffic: ClientTraffic | None = None,
    ) -> None:
        """Without ``guard`` and ``traffic`` (a node around a registry built
        elsewhere), the configuration's own."""
        self.config = config
        self.db = db
        self.registry = registry
        self.tokens = tokens
        self.resolver = resolver
        self.guard = guard if guard is not None else client_guard(config)
        """This process's per-client limits, shared by its front ends."""
        self.traffic = traffic if traffic is not None else client_traffic(config)
        """This process's traffic table, fed by its front ends, read by its accounting."""
        self.endpoints: dict[str, Endpoint] = {}
        """What the servers bound, by service (``http``, ``handle``, ``dns``), once listening."""
        self.access_log = AccessLogSwitch(enabled=config.access_log)


def compose(
    config: Config, db: AsyncEngine, node_key: NodeKey, *, reads: Reads | None = None
) -> Node:
    """The node's parts over an open database (``reads``: the database engine
    the resolver reads from, by default ``db``), each built with what the
    configuration says: nothing is set on them afterwards but by a reload."""
    guard = client_guard(config)
    registry = Registry(
        Services(
            db,
            node_prefix=config.node_prefix,
            node_key=node_key,
            grammar=config.grammar(),
            proxy_server_id=config.proxy_server_id,
            lockout=login_lockout(config),
            admission=enterprise_admission(guard),
            identifier_limit=max(0, config.enterprise_identifier_limit),
            prefix_limit=max(0, config.prefix_limit),
        ),
        issuer=load_issuer(config),
    )
    registry.services.listeners.append(count_registrations)
    registry.services.auth_listeners.append(count_auth_failure)
    resolver = Resolver(
        registry,
        cache_entries=config.cache_entries,
        read_engine=reads,
        recursion=Recursor() if config.allow_recursion else None,
    )
    return Node(
        config,
        db,
        registry,
        TokenIssuer(node_key),
        resolver,
        guard=guard,
        traffic=client_traffic(config),
    )


def make_data_dir(config: Config) -> None:
    """``data_dir``, made private on first start."""
    if not config.data_dir:
        return
    try:
        Path(config.data_dir).expanduser().mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot make data_dir {config.data_dir}: {exc.strerror}") from None


@asynccontextmanager
async def open_node(config: Config, *, migrate_schema: bool = False) -> AsyncIterator[Node]:
    """Database, node key and registry services, checked and ready."""
    make_data_dir(config)
    if not migrate_schema and (missing := missing_sqlite_file(config.database_url)):
        # Connecting would leave an empty file behind for the next command to trip on.
        raise StartupError(f"no database at {missing}; create it with `idnode migrate`")
    try:
        node_key = NodeKey.load_or_create(Path(config.key_file))
    except (OSError, ValueError, RuntimeError) as exc:
        raise StartupError(str(exc)) from None
    try:
        engine = create_engine(
            config.database_url,
            pool_size=config.database_pool_size,
            max_overflow=config.database_pool_overflow,
        )
    except (ArgumentError, ImportError) as exc:
        raise StartupError(f"bad database URL {config.database_url!r}: {exc}") from None
    reads: Reads | None = None
    try:
        try:
            if migrate_schema:
                await migrate(engine)
            await check_schema(engine)
            reads = create_read_engine(
                config.database_url,
                replica_url=config.database_read_url,
                pool_size=config.database_read_pool_size,
            )
            node = compose(config, engine, node_key, reads=reads)
            await node.registry.ensure_node()
            if node.registry.trust.enabled:
                await node.registry.trust.publish_node_certificate()
            pair = config.bootstrap_pair()
            if pair is not None:
                await node.registry.accounts.bootstrap_admin(*pair)
        except (DatabaseError, RegistryError, GrammarError, ConfigError) as exc:
            raise StartupError(str(exc)) from None
        except StorageUnavailable as exc:
            raise StartupError(f"database unavailable: {describe_error(exc)}") from None
        await warn_of_connection_budget(engine, config)
        try:
            yield node
        finally:
            await node.registry.accounts.drain()
    finally:
        if reads is not None:
            await reads.dispose()
        await engine.dispose()


def connections_per_process(config: Config) -> int:
    """The most PostgreSQL connections one process of the node may hold."""
    reads = config.database_read_pool_size * (2 if config.database_read_url else 1)
    return config.database_pool_size + config.database_pool_overflow + reads


async def warn_of_connection_budget(engine: AsyncEngine, config: Config) -> None:
    """Say so at start when this host's processes alone could use up the
    server's connections: the next one to ask would be refused under load."""
    if engine.dialect.name != "postgresql":
        return
    try:
        async with engine.connect() as conn:
            allowed = int((await conn.execute(text("SHOW max_connections"))).scalar_one())
    except (DBAPIError, OSError, ValueError):
        return
    wanted = connections_per_process(config) * worker_count(config)
    if wanted > allowed:
        log.warning(
            "this host's %d processes may open up to %d database connections, more than the "
            "server's max_connections (%d): lower database_pool_size, database_pool_overflow "
            "or database_read_pool_size, or raise max_connections (docs/operations.md)",
            worker_count(config),
            wanted,
            allowed,
        )


async def serve(
    config: Config,
    *,
    migrate_schema: bool = False,
    before_ready: Callable[[Node], Awaitable[None]] | None = None,
    after_ready: Callable[[Node, Endpoint], None] | None = None,
    reload: Callable[[], Config] | None = None,
) -> None:
    """Run the node until SIGINT or SIGTERM: its servers here, and with
    ``workers`` > 1 as many processes in all, sharing the ports. On SIGHUP,
    ``reload`` reads the configuration again (idnode.reloading)."""
    # A SIGHUP while the node starts (log rotation, an eager operator) must not
    # end it, which is the signal's default; the reload is ready once it serves.
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGHUP, log.info, "SIGHUP while starting: nothing to reload yet"
    )
    async with open_node(config, migrate_schema=migrate_schema) as node:
        log.info("database %s", url_for_log(config.database_url))
        if before_ready is not None:
            await before_ready(node)
        stop = stop_on_signals()
        zone = config.time_zone_info()
        workers_wanted = worker_count(config)
        # Stopped in reverse: the workers first, the servers last.
        async with contextlib.AsyncExitStack() as running:
            servers = await start_servers(
                node, reuse_port=workers_wanted > 1, node_gauges=True, processes=workers_wanted
            )
            running.push_async_callback(servers.close)
            if config.toplevel:
                running.push_async_callback((await start_sync(node, servers.site_bytes, zone)).stop)
            metrics_runner = await start_metrics_listener(config, node.db)
            if metrics_runner is not None:
                running.push_async_callback(metrics_runner.cleanup)
            servers.announce()  # TLS or not, "http" is the contract's service name
            workers = Workers()
            running.push_async_callback(workers.stop)
            await workers.spawn(
                config, Listeners(servers.http, servers.handle, servers.dns), workers_wanted - 1
            )
            settle_heap()
            servers.announce_dns()
            if after_ready is not None:
                after_ready(node, servers.http)
            if reload is not None:
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, reload_node, node, servers, workers, reload
                )
            await stop.wait()
            log.info("stopping")


@dataclass
class Syncing:
    """The sync worker running beside the servers (``serve --toplevel URL``)."""

    worker: SyncWorker
    session: aiohttp.ClientSession
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 30.0)
        await self.session.close()


def sync_worker(
    node: Node, session: aiohttp.ClientSession, site: bytes, zone: tzinfo
) -> SyncWorker:
    config = node.config
    key = signing_key(node.registry.services.node_key)
    client = SyncClient(
        config.toplevel, config.node_prefix, key, session=session, timeout=config.sync_timeout
    )
    return SyncWorker(
        node.db,
        client,
        services=node.registry.services,
        site=site,
        name=f"idnode {config.node_prefix}",
        batch=max(1, min(config.sync_batch, 500)),
        zone=zone,
    )


async def start_sync(node: Node, site: bytes, zone: tzinfo) -> Syncing:
    session = aiohttp.ClientSession()
    worker = sync_worker(node, session, site, zone)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(worker.run(stop))
    return Syncing(worker, session, stop, task)


def settle_heap() -> None:
    """Once started: what exists now (modules, the schema, the directory) lives as
    long as the process, so the cycle collector stops walking it (gc.freeze), and
    collects the young generation less often. Its full passes over a large heap
    are what stalled answers for milliseconds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    # Said once per serving process, so an operator (and the tests) can see that
    # every process that answers queries left its start-up heap to the collector.
    log.info("heap settled: %d start-up objects frozen", gc.get_freeze_count())


def stop_on_signals() -> asyncio.Event:
    """From here on SIGINT and SIGTERM ask for a clean stop instead of killing."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
