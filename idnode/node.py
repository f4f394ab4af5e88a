"""Wiring: open the node's resources, build its servers, run until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
import ssl
import sys
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import tzinfo
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import dns.exception
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

import registry.api
import resolver.dns.server
import resolver.handle.server
import resolver.http
from metrics import exposition
from metrics.instruments import RATE_LIMITED
from metrics.traffic import TRAFFIC
from registry.db import (
    DatabaseError,
    ReplicaReads,
    check_schema,
    create_engine,
    create_read_engine,
    describe_error,
    head_revision,
    migrate,
    missing_sqlite_file,
    url_for_log,
)
from registry.dnsnames import ZoneNames
from registry.errors import RegistryError, TooManyRequests
from registry.grammar import Grammar, GrammarError
from registry.lockout import LoginLockout
from registry.secrets import NodeKey, ServerKey, load_or_create_server_key
from registry.services import Actor, Registry
from registry.services.base import enterprise_key
from registry.tokens import TokenIssuer
from registry.values import (
    INTERFACE_BOTH,
    INTERFACE_QUERY,
    PROTOCOL_HTTP,
    PROTOCOL_HTTPS,
    PROTOCOL_TCP,
    PROTOCOL_UDP,
    Interface,
    SiteInfo,
    SiteServer,
    encode_public_key,
)
from resolver.dns.rrl import RateLimit
from resolver.dns.service import DnsService
from resolver.engine import Engine
from resolver.feed import ChangeFeed
from resolver.handle.recursion import Recursor
from resolver.handle.service import HandleService
from resolver.http.forwarded import real_clients
from resolver.http.limits import limit_clients
from resolver.limits import Guard, Limits
from sync.auth import signing_key
from sync.client import SyncClient
from sync.worker import SyncWorker

from . import openapi
from .accounting import Accounting, count_auth_failure, count_registrations
from .config import Config, ConfigError, Endpoint, parse_networks
from .listen import (
    Listening,
    StartupError,
    announce,
    ipv6_twin,
    listen,
)
from .logs import AccessLogSwitch, request_ids
from .reloading import setup_logging, split_changes
from .workers import Listeners, Workers, worker_count

log = logging.getLogger("idnode")


@dataclass
class Node:
    config: Config
    db: AsyncEngine
    registry: Registry
    tokens: TokenIssuer
    resolver: Engine
    endpoints: dict[str, Endpoint] = dataclasses.field(default_factory=dict)
    """What the servers bound, by service (``http``, ``handle``, ``dns``), once listening."""
    access_log: AccessLogSwitch = dataclasses.field(default_factory=AccessLogSwitch)
    guard: Guard = dataclasses.field(init=False)
    """This process's per-client limits, shared by its front ends."""

    def __post_init__(self) -> None:
        self.access_log.enabled = self.config.access_log
        self.guard = Guard(client_limits(self.config), zone=time_zone(self.config))
        self.registry.services.lockout = login_lockout(self.config)
        watch_traffic(self.config)
        services = self.registry.services
        services.admit = enterprise_admission(self.guard, services.node_prefix_key)
        self.registry.services.identifier_limit = max(0, self.config.enterprise_identifier_limit)
        self.registry.services.prefix_limit = max(0, self.config.prefix_limit)


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
    try:
        try:
            if migrate_schema:
                await migrate(engine)
            await check_schema(engine)
            grammar = Grammar(
                suffix_case_sensitive=config.suffix_case_sensitive,
                oid_arc=config.oid_arc or None,
                node_prefix=config.node_prefix if config.oid_arc else None,
            )
            reg = Registry(
                engine,
                node_prefix=config.node_prefix,
                node_key=node_key,
                grammar=grammar,
                proxy_server_id=config.proxy_server_id,
            )
            reg.services.listeners.append(count_registrations)
            reg.services.auth_listeners.append(count_auth_failure)
            await reg.ensure_node()
            pair = config.bootstrap_pair()
            if pair is not None:
                await reg.accounts.bootstrap_admin(*pair)
        except (DatabaseError, RegistryError, GrammarError, ConfigError) as exc:
            raise StartupError(str(exc)) from None
        except (OSError, DBAPIError) as exc:
            raise StartupError(f"database unavailable: {describe_error(exc)}") from None
        if config.database_read_url and not config.database_url.startswith("postgresql"):
            raise StartupError(
                "database_read_url needs a PostgreSQL database_url (a replica of it)"
            )
        await warn_of_connection_budget(engine, config)
        reads = create_read_engine(
            config.database_url,
            replica_url=config.database_read_url,
            pool_size=config.database_read_pool_size,
        )
        resolver = Engine(
            reg,
            cache_entries=config.cache_entries,
            read_engine=reads,
            recursion=Recursor() if config.allow_recursion else None,
        )
        try:
            yield Node(config, engine, reg, TokenIssuer(node_key), resolver)
        finally:
            await reg.accounts.drain()
            await reads.dispose()
    finally:
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


HEALTH_ENGINE = web.AppKey("engine", AsyncEngine)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers and reaches its database."""
    try:
        async with request.app[HEALTH_ENGINE].connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not healthy", never a 500
        return web.json_response({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database is reachable and its schema is the one this code needs."""
    try:
        await check_schema(request.app[HEALTH_ENGINE])
    except DatabaseError as exc:
        return web.json_response({"status": "not ready", "schema": str(exc)[:200]}, status=503)
    except Exception as exc:  # unreachable, timed out...: not ready, never a 500
        return web.json_response({"status": "not ready", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ready", "database": "ok", "schema": head_revision()})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: every process of the node added up."""
    return web.Response(body=exposition.render(), headers={"Content-Type": exposition.CONTENT_TYPE})


def add_health_routes(app: web.Application, db: AsyncEngine) -> None:
    app[HEALTH_ENGINE] = db
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def start_metrics_listener(config: Config, db: AsyncEngine) -> web.AppRunner | None:
    """``--metrics HOST:PORT``: health and metrics on a port of their own."""
    if not config.metrics:
        return None
    try:
        endpoint = Endpoint.parse(config.metrics)
    except ConfigError as exc:
        raise StartupError(f"bad metrics listener: {exc}") from None
    sockets = listen_service(config, endpoint, udp=False)
    app = web.Application()
    add_health_routes(app, db)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for sock in sockets.tcp:
        await web.SockSite(runner, sock).start()
    announce("metrics", sockets.endpoint, sockets.twins)
    return runner


def client_limits(config: Config) -> Limits:
    return Limits(
        client_rate=config.client_rate,
        client_burst=max(config.client_burst, 1),
        client_daily=config.client_daily_limit,
        enterprise_rate=config.enterprise_rate,
        enterprise_burst=max(config.enterprise_burst, 1),
        exempt=config.networks("limits_exempt"),
    )


def enterprise_admission(guard: Guard, node_prefix_key: str) -> Callable[[Actor, str], None]:
    """Services.admit: an authenticated caller's enterprise within its rate, or
    TooManyRequests (counted as refused on the caller's protocol)."""

    def admit(actor: Actor, protocol: str) -> None:
        key = enterprise_key(actor, node_prefix_key)
        if key is None:
            return
        refusal = guard.enterprise(key)
        if refusal is not None:
            RATE_LIMITED.labels(protocol, "refused").inc()
            raise TooManyRequests(refusal.retry_after)

    return admit


def login_lockout(config: Config) -> LoginLockout:
    return LoginLockout(
        attempts=config.login_attempts,
        seconds=config.login_lockout,
        exempt=config.networks("limits_exempt"),
    )


def watch_traffic(config: Config) -> None:
    """The process's traffic table (metrics.traffic) with the configured reading."""
    TRAFFIC.scan_min_not_found = max(1, config.scan_threshold)
    TRAFFIC.window = max(1, config.traffic_window)


def time_zone(config: Config) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(config.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise StartupError(f"unknown time_zone {config.time_zone!r}: {exc}") from None


@dataclass
class Counting:
    """Daily accounting running beside the servers (idnode.accounting)."""

    accounting: Accounting
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    @classmethod
    def start(cls, node: Node, *, node_gauges: bool) -> Counting:
        accounting = Accounting(
            node.db,
            time_zone(node.config),
            persist_seconds=max(1, node.config.accounting_interval),
            node_gauges=node_gauges,
        )
        stop = asyncio.Event()
        return cls(accounting, stop, asyncio.get_running_loop().create_task(accounting.run(stop)))

    async def stop(self) -> None:
        """After the servers: the last answers' counts are persisted too."""
        self.stop_event.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.accounting.close()


def build_http_app(node: Node) -> web.Application:
    app = web.Application(
        client_max_size=registry.api.MAX_BODY_BYTES,
        middlewares=[
            real_clients(
                lambda: node.config.trusted_proxies,
                partial(parse_networks, setting="trusted_proxies"),
            ),
            request_ids(node.access_log),
            limit_clients(node.guard),
        ],
    )
    add_health_routes(app, node.db)
    registry.api.setup(app, node.registry, node.tokens, toplevel_name=node.config.toplevel_name)
    openapi.add_route(app)
    # Last: the redirect proxy's catch-all for names.
    resolver.http.setup(
        app,
        node.resolver,
        node.registry,
        node.tokens,
        allow_plain_http_auth=node.config.allow_plain_http_auth,
    )
    return app


def node_site(
    config: Config,
    http: Endpoint,
    *,
    tls: bool,
    handle: Endpoint | None = None,
    public_key: bytes = b"",
    description: str = "",
) -> SiteInfo:
    """This node's HS_SITE: where and how it answers (the interfaces it serves),
    and the key its signed answers verify with."""
    address = config.site_address or (handle or http).host
    if address in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard is no address to publish
        address = "127.0.0.1"
    interfaces = []
    if handle is not None:
        interfaces += [
            Interface(INTERFACE_BOTH, PROTOCOL_TCP, handle.port),
            Interface(INTERFACE_QUERY, PROTOCOL_UDP, handle.port),
        ]
    interfaces.append(
        Interface(INTERFACE_BOTH, PROTOCOL_HTTPS if tls else PROTOCOL_HTTP, http.port)
    )
    server = SiteServer(1, SiteServer.pack_address(address), public_key, tuple(interfaces))
    desc = description or f"idnode {config.node_prefix}"
    return SiteInfo(servers=(server,), attributes=(("desc", desc),))


def tls_context(config: Config) -> ssl.SSLContext | None:
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise StartupError("TLS needs both tls_cert and tls_key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load TLS certificate: {exc}") from None
    return context


@dataclass
class Servers:
    """One process's listeners — HTTP, the native Handle protocol, DNS, each at
    its address and that address's IPv6 twin — with the change feed that keeps
    its caches fresh and the accounting of what it answers."""

    http: Endpoint
    handle: Endpoint
    dns: Endpoint
    twins: dict[str, list[Endpoint]]
    """The IPv6 twins' endpoints, by service."""
    site_bytes: bytes
    runner: web.AppRunner
    native: list[resolver.handle.server.HandleListeners]
    zone: list[resolver.dns.server.DnsListeners]
    feed: ChangeFeed
    counting: Counting
    tls: ssl.SSLContext | None = None

    async def close(self) -> None:
        """Stop taking requests, let those in flight finish, then count the last ones."""
        await self.runner.cleanup()
        for native in self.native:
            await native.close()
        for zone in self.zone:
            await zone.close()
        await self.feed.stop()
        await self.counting.stop()

    def announce(self) -> None:
        """The ready lines, each service's IPv6 twins (``http6``...) before it."""
        announce("http", self.http, self.twins["http"])
        announce("handle", self.handle, self.twins["handle"])

    def announce_dns(self) -> None:
        announce("dns", self.dns, self.twins["dns"])


def listen_service(
    config: Config, endpoint: Endpoint, *, udp: bool, reuse_port: bool = False
) -> Listening:
    """A service's sockets at ``endpoint`` and its IPv6 twin (``listen_ipv6``)."""
    try:
        twin = ipv6_twin(config.listen_ipv6, endpoint.host)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    return listen(endpoint, udp=udp, reuse_port=reuse_port, twin=twin)


async def start_servers(node: Node, *, reuse_port: bool, node_gauges: bool) -> Servers:
    """Bind and start every listener at the configured endpoints (port 0: any;
    ``reuse_port``: other processes of the node bind the same ports)."""
    config = node.config
    context = tls_context(config)
    http_sockets = listen_service(config, config.http, udp=False, reuse_port=reuse_port)
    handle_sockets = listen_service(config, config.handle, udp=True, reuse_port=reuse_port)
    http, handle = http_sockets.endpoint, handle_sockets.endpoint
    server_key = load_server_key(config)
    site = node_site(
        config,
        http,
        tls=context is not None,
        handle=handle,
        public_key=encode_public_key(server_key.public_key()),
    )
    node.registry.services.site = site
    site_bytes = site.to_bytes()
    service = HandleService(
        node.resolver,
        node.registry,
        site_serial=site.serial,
        server_key=server_key,
        site_bytes=lambda: site_bytes,
        guard=node.guard,
        udp_amplification=max(0, config.udp_amplification),
    )
    native = [
        await resolver.handle.server.start(service, tcp, udp) for tcp, udp in handle_sockets.pairs()
    ]
    dns_sockets, zone = await serve_zone(node, reuse_port=reuse_port)
    reads = node.resolver.db
    feed = ChangeFeed(
        node.db,
        node.resolver.on_changes,
        settle=partial(reads.catch_up, node.db) if isinstance(reads, ReplicaReads) else None,
    )
    await feed.start()
    counting = Counting.start(node, node_gauges=node_gauges)
    runner = web.AppRunner(build_http_app(node), access_log=None, handle_signals=False)
    await runner.setup()
    for sock in http_sockets.tcp:
        await web.SockSite(runner, sock, ssl_context=context).start()
    dns_at = dns_sockets.endpoint
    node.endpoints.update(http=http, handle=handle, dns=dns_at)
    twins = {
        "http": http_sockets.twins,
        "handle": handle_sockets.twins,
        "dns": dns_sockets.twins,
    }
    return Servers(
        http, handle, dns_at, twins, site_bytes, runner, native, zone, feed, counting, context
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
        stop = _stop_on_signals()
        zone = time_zone(config)
        workers_wanted = worker_count(config)
        servers = await start_servers(node, reuse_port=workers_wanted > 1, node_gauges=True)
        syncing = None
        metrics_runner = None
        workers = Workers()
        try:
            syncing = await start_sync(node, servers.site_bytes, zone) if config.toplevel else None
            metrics_runner = await start_metrics_listener(config, node.db)
            servers.announce()  # TLS or not, "http" is the contract's service name
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
        finally:
            await workers.stop()
            if syncing is not None:
                await syncing.stop()
            await servers.close()
            if metrics_runner is not None:
                await metrics_runner.cleanup()


def reload_node(
    node: Node, servers: Servers, workers: Workers, reload: Callable[[], Config]
) -> None:
    """SIGHUP in the node: the configuration read again and applied here and in
    every worker; a bad one is refused whole and the running settings kept."""
    try:
        wanted = reload()
        settings, later = split_changes(node.config, wanted)
        apply_settings(node, servers, settings)
    except (ConfigError, StartupError) as exc:
        log.error("reload refused, running settings kept: %s", exc)
        return
    workers.reload(settings)
    log.info(
        "reloaded configuration%s",
        f"; these wait for a restart: {', '.join(later)}" if later else "",
    )


def apply_settings(node: Node, servers: Servers, settings: Mapping[str, Any]) -> None:
    """Apply reloadable settings in this process: checked first, then all at
    once (ConfigError or StartupError: nothing applied)."""
    config = dataclasses.replace(node.config, **settings).validate()
    limit = rate_limit(config)
    limits, lockout = client_limits(config), login_lockout(config)
    if servers.tls is not None and tls_context(config) is not None:
        # Checked on a fresh context first: the live one must never be half-loaded.
        servers.tls.load_cert_chain(config.tls_cert, config.tls_key)
    setup_logging(config)
    node.access_log.enabled = config.access_log
    for zone in servers.zone:
        zone.udp.limiter.reconfigure(limit)
    node.guard.reconfigure(limits)
    node.registry.services.lockout.reconfigure(lockout.attempts, lockout.seconds, lockout.exempt)
    node.registry.services.identifier_limit = max(0, config.enterprise_identifier_limit)
    node.registry.services.prefix_limit = max(0, config.prefix_limit)
    watch_traffic(config)
    node.config = config


async def serve_zone(
    node: Node, *, reuse_port: bool
) -> tuple[Listening, list[resolver.dns.server.DnsListeners]]:
    """The DNS zone on UDP and TCP at ``config.dns`` (and its IPv6 twin),
    answered from the node's engine."""
    sockets = listen_service(node.config, node.config.dns, udp=True, reuse_port=reuse_port)
    zone = dns_service(node, sockets.endpoint)
    await zone.start()
    limit = rate_limit(node.config)
    listeners = [
        await resolver.dns.server.start(zone, tcp, udp, rate_limit=limit, guard=node.guard)
        for tcp, udp in sockets.pairs()
    ]
    return sockets, listeners


def dns_service(node: Node, dns_at: Endpoint) -> DnsService:
    config = node.config
    address = config.dns_address or dns_at.host
    if address in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard is no address to publish
        address = "127.0.0.1"
    try:
        names = ZoneNames.of(config.dns_zone, suffix_case_sensitive=config.suffix_case_sensitive)
    except (dns.exception.DNSException, ValueError) as exc:
        raise StartupError(f"bad dns_zone {config.dns_zone!r}: {exc}") from None
    return DnsService(
        node.resolver,
        names,
        ns_address=address,
        cache_entries=config.cache_entries,
        amplification=max(0, config.udp_amplification),
    )


def rate_limit(config: Config) -> RateLimit:
    return RateLimit(
        rate=config.dns_rrl_rate,
        burst=max(config.dns_rrl_burst, 1),
        slip=config.dns_rrl_slip,
        exempt=config.networks("dns_rrl_exempt"),
    )


# --- worker processes (idnode.workers starts them; this is what runs in one) ---------


async def serve_worker(config: Config) -> None:
    """One more process on the node's ports (see ``--workers``)."""
    loop = asyncio.get_running_loop()
    # The node reads the configuration and passes it on; a SIGHUP sent to the
    # whole process group must not end the worker (the default action).
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    async with open_node(config) as node:
        stop = _stop_on_signals()
        servers = await start_servers(node, reuse_port=True, node_gauges=False)
        control = ControlPipe(node, servers, stop)
        loop.add_reader(sys.stdin.fileno(), control.read)
        try:
            settle_heap()
            announce("worker", servers.http)
            await stop.wait()
        finally:
            loop.remove_reader(sys.stdin.fileno())
            await servers.close()


class ControlPipe:
    """A worker's stdin: a JSON line of reloaded settings from the node, or the
    end of the file — the node is going (or gone), and so is the worker."""

    def __init__(self, node: Node, servers: Servers, stop: asyncio.Event) -> None:
        self.node = node
        self.servers = servers
        self.stop = stop
        self.pending = b""

    def read(self) -> None:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            self.stop.set()
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            return
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for line in lines:
            try:
                apply_settings(self.node, self.servers, json.loads(line))
            except (ValueError, TypeError, StartupError) as exc:
                log.error("reload refused, running settings kept: %s", exc)


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


def load_server_key(config: Config) -> ServerKey:
    """The key the node signs answers with: RSA made on first start, or a DSA
    site key brought from HANDLE.NET."""
    try:
        return load_or_create_server_key(Path(config.server_key_file))
    except (OSError, RuntimeError) as exc:
        raise StartupError(str(exc)) from None


def configured_site(config: Config) -> bytes:
    """This node's HS_SITE from its configuration (for processes that serve nothing)."""
    site = node_site(
        config,
        config.http,
        tls=bool(config.tls_cert),
        handle=config.handle,
        public_key=encode_public_key(load_server_key(config).public_key()),
    )
    return site.to_bytes()


def settle_heap() -> None:
    """Once started: what exists now (modules, the schema, the directory) lives as
    long as the process, so the cycle collector stops walking it (gc.freeze), and
    collects the young generation less often. Its full passes over a large heap
    are what stalled answers for milliseconds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _stop_on_signals() -> asyncio.Event:
    """From here on SIGINT and SIGTERM ask for a clean stop instead of killing."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
