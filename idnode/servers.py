"""One process's servers: HTTP (the SNMS API, Handle REST, the redirect proxy,
health and metrics), the native Handle protocol and the DNS zone, each at its
address and that address's IPv6 twin, with the change feed that keeps their
caches fresh and the accounting of what they answer.

Everything is bound before anything starts, and started under one exit stack:
a port that cannot be had, or any later failure, closes what was already open,
and a stop closes it all in reverse — the listeners first, then the feed, then
the accounting of the last answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import dns.exception
from aiohttp import web

import registry.api
import resolver.dns.server
import resolver.handle.server
import resolver.http
from registry.db import ReplicaReads
from registry.values import encode_public_key
from resolver.dns.service import DnsService
from resolver.feed import ChangeFeed
from resolver.handle.service import HandleService
from resolver.http.forwarded import real_clients
from resolver.http.limits import limit_clients

from . import openapi
from .accounting import Accounting
from .config import Config, Endpoint, parse_networks
from .health import add_health_routes
from .limits import rate_limit
from .listen import Listening, StartupError, announce, listen_service
from .logs import request_ids
from .site import load_server_key, node_site, site_sm2_pubkey
from .steering import steer_by_client

log = logging.getLogger("idnode")

if TYPE_CHECKING:
    from .node import Node


def tls_context(config: Config) -> ssl.SSLContext | None:
    """HTTPS for the HTTP listener (``tls_cert``, ``tls_key``); None: plain HTTP."""
    files = config.tls_files()
    if files is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(*files)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load TLS certificate: {exc}") from None
    return context


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
            node.config.time_zone_info(),
            persist_seconds=max(1, node.config.accounting_interval),
            node_gauges=node_gauges,
            traffic=node.traffic,
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
            limit_clients(node.guard, node.traffic),
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
        trust_root=node.config.trust_root(),
    )
    return app


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
    zone: list[resolver.dns.server.DnsListeners]
    """The DNS listeners (their response rate limiters are reconfigured on reload)."""
    running: contextlib.AsyncExitStack
    """What :meth:`close` stops, the last started first."""
    tls: ssl.SSLContext | None = None

    async def close(self) -> None:
        """Stop taking requests, let those in flight finish, then count the last ones."""
        await self.running.aclose()

    def announce(self) -> None:
        """The ready lines, each service's IPv6 twins (``http6``...) before it."""
        announce("http", self.http, self.twins["http"])
        announce("handle", self.handle, self.twins["handle"])

    def announce_dns(self) -> None:
        announce("dns", self.dns, self.twins["dns"])


async def start_servers(
    node: Node, *, reuse_port: bool, node_gauges: bool, processes: int = 1
) -> Servers:
    """Bind and start every listener at the configured endpoints (port 0: any;
    ``reuse_port``: other processes of the node bind the same ports). The first
    of ``processes`` sharing them steers each client's native administration to
    one of them (:mod:`.steering`)."""
    config = node.config
    context = tls_context(config)
    running = contextlib.AsyncExitStack()
    async with running:  # on any failure below, what was opened so far is closed

        def bound(endpoint: Endpoint, *, udp: bool) -> Listening:
            sockets = listen_service(config, endpoint, udp=udp, reuse_port=reuse_port)
            # Closed last: after a failed start, what nothing else closes; after
            # the servers, nothing (they closed the sockets they were given).
            running.callback(sockets.close)
            return sockets

        http_sockets = bound(config.http, udp=False)
        handle_sockets = bound(config.handle, udp=True)
        steer_native(handle_sockets, processes)
        dns_sockets = bound(config.dns, udp=True)
        http, handle, dns_at = http_sockets.endpoint, handle_sockets.endpoint, dns_sockets.endpoint
        server_key = load_server_key(config)
        site = node_site(
            config,
            http,
            tls=context is not None,
            handle=handle,
            public_key=encode_public_key(server_key.public_key()),
        )
        node.registry.services.site = site
        node.registry.services.site_sm2_key = site_sm2_pubkey(config)
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
        zone_service = dns_service(node, dns_at)

        # Stopped in reverse: the accounting last, so the last answers are counted.
        running.push_async_callback(Counting.start(node, node_gauges=node_gauges).stop)
        reads = node.resolver.db
        feed = ChangeFeed(
            node.db,
            node.resolver.on_changes,
            settle=partial(reads.catch_up, node.db) if isinstance(reads, ReplicaReads) else None,
        )
        await feed.start()
        running.push_async_callback(feed.stop)
        await zone_service.start()
        limit = rate_limit(config)
        zone = []
        for tcp, udp in dns_sockets.pairs():
            listeners = await resolver.dns.server.start(
                zone_service, tcp, udp, rate_limit=limit, traffic=node.traffic
            )
            running.push_async_callback(listeners.close)
            zone.append(listeners)
        for tcp, udp in handle_sockets.pairs():
            native = await resolver.handle.server.start(service, tcp, udp, traffic=node.traffic)
            running.push_async_callback(native.close)
        runner = web.AppRunner(build_http_app(node), access_log=None, handle_signals=False)
        await runner.setup()
        running.push_async_callback(runner.cleanup)
        for sock in http_sockets.tcp:
            await web.SockSite(runner, sock, ssl_context=context).start()
        node.endpoints.update(http=http, handle=handle, dns=dns_at)
        twins = {
            "http": http_sockets.twins,
            "handle": handle_sockets.twins,
            "dns": dns_sockets.twins,
        }
        servers = Servers(http, handle, dns_at, twins, site_bytes, zone, running.pop_all(), context)
    return servers


def dns_service(node: Node, dns_at: Endpoint) -> DnsService:
    """The DNS zone (``dns_zone``), answered by the node's resolver; its
    nameserver's address is ``dns_address``, else the one DNS listens at."""
    config = node.config
    address = config.dns_address or dns_at.host
    if address in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard is no address to publish
        address = "127.0.0.1"
    try:
        names = config.dns_names()
    except (dns.exception.DNSException, ValueError) as exc:
        raise StartupError(f"bad dns_zone {config.dns_zone!r}: {exc}") from None
    return DnsService(
        node.resolver,
        names,
        ns_address=address,
        cache_entries=config.cache_entries,
        amplification=max(0, config.udp_amplification),
        guard=node.guard,
    )


def steer_native(sockets: Listening, processes: int) -> None:
    """Attach the steering program to the native port's groups; a kernel that
    refuses it leaves the kernel's spread (and says what that costs)."""
    try:
        for sock in (*sockets.tcp, *sockets.udp):
            steer_by_client(sock, processes)
    except OSError as exc:
        log.warning(
            "native clients not steered by address (%s): a session or challenge may "
            "meet another process than the one that made it",
            exc.strerror,
        )
