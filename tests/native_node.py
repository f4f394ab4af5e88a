"""The native protocol's service on loopback UDP and TCP for tests (``native_server``;
the ``native`` fixture in tests/conftest.py serves it), the records it is seeded with,
the node administrator's secret key, and a raw UDP exchange.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from idnode.config import Config, Endpoint
from idnode.listen import bind_pair
from idnode.site import node_site
from idnode.steering import steer_by_client
from registry.models import PERM_RESTRICTED, HandleValue
from registry.secrets import ServerKey
from registry.services import Actor, Registry
from registry.values import encode_public_key
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import server as srv
from resolver.handle import service as svc
from resolver.resolution import Resolver
from tests.factories import ADMIN_SK, hosted_enterprise
from tests.factories import handle_value as text

NODE = "0.NA/88.100"


@dataclass
class Native:
    host: str
    port: int
    service: svc.HandleService
    registry: Registry
    resolver: Resolver

    async def udp(self, message: c.Message) -> c.Message:
        return await cl.udp_call(self.host, self.port, message)

    async def tcp(self, message: c.Message, credentials: cl.Credentials | None = None) -> c.Message:
        return await cl.tcp_call(self.host, self.port, message, credentials=credentials)

    async def session(self, credentials: cl.Credentials | None = None) -> cl.TcpSession:
        return await cl.TcpSession.open(self.host, self.port, credentials)


@contextlib.asynccontextmanager
async def native_server(
    registry: Registry, key: ServerKey, *, processes: int = 1
) -> AsyncIterator[Native]:
    """The native service on loopback UDP and TCP, signing with ``key``; with
    ``processes`` > 1, as many services (each its own sessions and challenges, as
    the node's processes) sharing the port, steered as the node steers them."""
    resolver = Resolver(registry)
    tcp_sock, udp_sock = bind_pair(Endpoint("127.0.0.1", 0), reuse_port=processes > 1)
    port = tcp_sock.getsockname()[1]
    pairs = [(tcp_sock, udp_sock)]
    pairs += [bind_pair(Endpoint("127.0.0.1", port), reuse_port=True) for _ in range(processes - 1)]
    steer_by_client(tcp_sock, processes)
    steer_by_client(udp_sock, processes)
    site = node_site(
        Config(),
        Endpoint("127.0.0.1", 8000),
        tls=False,
        handle=Endpoint("127.0.0.1", port),
        public_key=encode_public_key(key.public_key()),
    )
    registry.services.site = site
    services = [
        svc.HandleService(
            resolver,
            registry,
            site_serial=site.serial,
            server_key=key,
            site_bytes=site.to_bytes,
            # Whole answers over UDP, however large: these tests are about the protocol
            # (tests/test_limits.py sends large ones to TCP).
            udp_amplification=0,
        )
        for _ in pairs
    ]
    listeners = [
        await srv.start(service, tcp, udp, idle=1.0)
        for service, (tcp, udp) in zip(services, pairs, strict=True)
    ]
    try:
        yield Native("127.0.0.1", port, services[0], registry, resolver)
    finally:
        for listener in listeners:
            await listener.close()


async def seed(registry: Registry, admin: Actor) -> str:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    await registry.handles.create(
        admin,
        f"{prefix}/demo-0001",
        [
            text(1, "URL", "https://example.org/products/demo-0001"),
            text(2, "EMAIL", "ops@example.org"),
            text(3, "URL.mirror", "https://mirror.example.org/demo-0001"),
            text(4, "SECRET", "internal", permissions=PERM_RESTRICTED),
        ],
        overwrite=False,
    )
    await registry.handles.create(
        admin, f"{prefix}/big", [HandleValue(1, "BLOB", b"x" * 1500)], overwrite=False
    )
    return prefix


def node_secret() -> cl.SecretKey:
    return cl.SecretKey(NODE, 300, ADMIN_SK.encode())


def udp_raw(native: Native, data: bytes, wait: float = 0.5) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(data, (native.host, native.port))
        received = []
        try:
            while True:
                received.append(sock.recv(2048))
        except TimeoutError:
            return received
