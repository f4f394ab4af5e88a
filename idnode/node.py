"""Wiring: open the node's resources, build its servers, run until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

import registry.api
import resolver.handle.server
import resolver.http
from registry.db import (
    DatabaseError,
    check_schema,
    create_engine,
    create_read_engine,
    describe_error,
    migrate,
    url_for_log,
)
from registry.errors import RegistryError
from registry.grammar import Grammar, GrammarError
from registry.secrets import NodeKey, load_or_create_server_key
from registry.services import Registry
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
from resolver.engine import Engine
from resolver.feed import ChangeFeed
from resolver.handle.service import HandleService

from .config import Config, ConfigError, Endpoint

log = logging.getLogger("idnode")


class StartupError(RuntimeError):
    """The node cannot start; the message is the one-line reason."""


@dataclass
class Node:
    config: Config
    db: AsyncEngine
    registry: Registry
    tokens: TokenIssuer
    resolver: Engine


@asynccontextmanager
async def open_node(config: Config, *, migrate_schema: bool = False) -> AsyncIterator[Node]:
    """Database, node key and registry services, checked and ready."""
    try:
        node_key = NodeKey.load_or_create(Path(config.key_file))
    except (OSError, ValueError, RuntimeError) as exc:
        raise StartupError(str(exc)) from None
    try:
        engine = create_engine(config.database_url)
    except (ArgumentError, ImportError) as exc:
        raise StartupError(f"bad database URL {config.database_url!r}: {exc}") from None
    try:
        try:
            if migrate_schema:
                await migrate(engine)
            await check_schema(engine)
            grammar = Grammar(suffix_case_sensitive=config.suffix_case_sensitive)
            reg = Registry(
                engine,
                node_prefix=config.node_prefix,
                node_key=node_key,
                grammar=grammar,
                proxy_server_id=config.proxy_server_id,
            )
            await reg.ensure_node()
            pair = config.bootstrap_pair()
            if pair is not None:
                await reg.accounts.bootstrap_admin(*pair)
        except (DatabaseError, RegistryError, GrammarError, ConfigError) as exc:
            raise StartupError(str(exc)) from None
        except (OSError, DBAPIError) as exc:
            raise StartupError(f"database unavailable: {describe_error(exc)}") from None
        reads = create_read_engine(config.database_url)
        resolver = Engine(reg, cache_entries=config.cache_entries, read_engine=reads)
        try:
            yield Node(config, engine, reg, TokenIssuer(node_key), resolver)
        finally:
            await reg.accounts.drain()
            await reads.dispose()
    finally:
        await engine.dispose()


HEALTH_ENGINE = web.AppKey("engine", AsyncEngine)


async def healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[HEALTH_ENGINE].connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not healthy", never a 500
        return web.json_response({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


def build_http_app(node: Node) -> web.Application:
    app = web.Application(client_max_size=registry.api.MAX_BODY_BYTES)
    app[HEALTH_ENGINE] = node.db
    app.router.add_get("/healthz", healthz)
    registry.api.setup(app, node.registry, node.tokens, toplevel_name=node.config.toplevel_name)
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
    return SiteInfo(servers=(server,), attributes=(("desc", f"idnode {config.node_prefix}"),))


def bind_handle(endpoint: Endpoint) -> tuple[socket.socket, socket.socket]:
    """TCP and UDP on one port (port 0: a port free for both)."""
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    for _attempt in range(20):
        tcp = bind_tcp(endpoint)
        port = tcp.getsockname()[1]
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((endpoint.host, port))
        except OSError as exc:
            udp.close()
            tcp.close()
            if endpoint.port:
                raise StartupError(f"cannot listen on UDP {endpoint}: {exc.strerror}") from None
            continue  # the TCP port was free, its UDP twin not: try another
        udp.setblocking(False)
        return tcp, udp
    raise StartupError(f"no port free for both TCP and UDP on {endpoint.host}")


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


def bind_tcp(endpoint: Endpoint) -> socket.socket:
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((endpoint.host, endpoint.port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {endpoint}: {exc.strerror}") from None
    return sock


def bound(sock: socket.socket) -> Endpoint:
    host, port = sock.getsockname()[:2]
    return Endpoint(host, port)


def announce(service: str, endpoint: Endpoint) -> None:
    """The ready line scripts and tests wait for."""
    print(f"listening {service} {endpoint}", flush=True)
    log.info("listening %s %s", service, endpoint)


async def serve(
    config: Config,
    *,
    migrate_schema: bool = False,
    before_ready: Callable[[Node], Awaitable[None]] | None = None,
    after_ready: Callable[[Node, Endpoint], None] | None = None,
) -> None:
    """Run the node until SIGINT or SIGTERM."""
    async with open_node(config, migrate_schema=migrate_schema) as node:
        log.info("database %s", url_for_log(config.database_url))
        if before_ready is not None:
            await before_ready(node)
        stop = _stop_on_signals()
        context = tls_context(config)
        sock = bind_tcp(config.http)
        http = bound(sock)
        handle_tcp, handle_udp = bind_handle(config.handle)
        handle = bound(handle_tcp)
        try:
            server_key = load_or_create_server_key(Path(config.server_key_file))
        except (OSError, RuntimeError) as exc:
            raise StartupError(str(exc)) from None
        site = node_site(
            config,
            http,
            tls=context is not None,
            handle=handle,
            public_key=encode_public_key(server_key.public_key()),
        )
        node.registry.services.site = site
        site_bytes = site.to_bytes()
        native = HandleService(
            node.resolver,
            node.registry,
            site_serial=site.serial,
            server_key=server_key,
            site_bytes=lambda: site_bytes,
            allow_recursion=config.allow_recursion,
        )
        listeners = await resolver.handle.server.start(native, handle_tcp, handle_udp)
        feed = ChangeFeed(node.db, node.resolver.on_changes)
        await feed.start()
        runner = web.AppRunner(
            build_http_app(node),
            access_log=log if config.access_log else None,
            handle_signals=False,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock, ssl_context=context).start()
            announce("http", http)  # TLS or not: the contract's service name
            announce("handle", handle)
            if after_ready is not None:
                after_ready(node, http)
            await stop.wait()
            log.info("stopping")
        finally:
            await runner.cleanup()
            await listeners.close()
            await feed.stop()


def _stop_on_signals() -> asyncio.Event:
    """From here on SIGINT and SIGTERM ask for a clean stop instead of killing."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
