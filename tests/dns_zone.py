"""The DNS zone on loopback for tests: a running zone and the clients that ask it
(``Zone``; the ``start_zone``, ``zone`` and ``seeded_zone`` fixtures in tests/conftest.py
start them), the records it is seeded with, and the reference servers to compare with.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.asyncquery
import dns.asyncresolver
import dns.message
import pytest

from idnode.config import Config
from loadtest.refdns import server_binary
from registry.dnsnames import ZoneNames
from registry.models import PERM_RESTRICTED
from registry.services import Actor, Registry
from resolver.dns import server as srv
from resolver.dns.rrl import RateLimit
from resolver.dns.service import DnsService
from resolver.resolution import Resolver
from tests.factories import handle_value as value
from tests.factories import hosted_enterprise, needs

ZONE = Config().dns_zone


TIMEOUT = 3.0


NO_LIMIT = RateLimit(rate=0)


@dataclass
class Zone:
    host: str
    port: int
    service: DnsService
    registry: Registry
    resolver: Resolver
    names: ZoneNames

    def name(self, identifier: str) -> str:
        return self.names.of_identifier(self.resolver.parse(identifier)).to_text()

    async def ask(
        self, qname: str, rdtype: str | int, *, tcp: bool = False, **kw: object
    ) -> dns.message.Message:
        query = dns.message.make_query(qname, rdtype, **kw)  # type: ignore[arg-type]
        return await self.send(query, tcp=tcp)

    async def send(self, query: dns.message.Message, *, tcp: bool = False) -> dns.message.Message:
        if tcp:
            return await dns.asyncquery.tcp(query, self.host, port=self.port, timeout=TIMEOUT)
        return await dns.asyncquery.udp(query, self.host, port=self.port, timeout=TIMEOUT)

    async def raw_udp(self, data: bytes) -> bytes | None:
        """Send bytes, return the reply (None if none came within a second)."""
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, (self.host, self.port))
            await loop.sock_sendall(sock, data)
            try:
                return await asyncio.wait_for(loop.sock_recv(sock, 65535), 1.0)
            except TimeoutError:
                return None

    async def tool(self, program: str, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            program,
            f"@{self.host}",
            "-p",
            str(self.port),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return out.decode()

    def stub(self, *, tcp: bool = False) -> dns.asyncresolver.Resolver:
        stub = dns.asyncresolver.Resolver(configure=False)
        stub.nameservers = [self.host]
        stub.port = self.port
        stub.lifetime = TIMEOUT
        stub.retry_servfail = False
        return stub


Starter = Callable[..., Awaitable[Zone]]


RUNNING: list[srv.DnsListeners] = []


LONG = "L" * 230


BIG = range(1, 41)


OID = "1.2.156.86.1.1.7"


async def seed(zone: Zone, admin: Actor) -> str:
    registry = zone.registry
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    records = {
        "abc": [
            value(1, "URL", "https://example.org/abc"),
            value(2, "EMAIL", "ops@example.org"),
            value(3, "URL", "https://mirror.example.org/abc"),
            value(4, "SECRET", "internal", permissions=PERM_RESTRICTED),
            value(5, "BIN", b"\x00\x01\xff"),
        ],
        "SN-2026-0001": [value(1, "URL", "https://example.org/sn/1")],
        "设备-001": [value(1, "DESC", "泵")],
        LONG: [value(1, "URL", "https://example.org/long")],
        "mid": [value(i, "NOTE", f"{i:03d}" + "m" * 50) for i in range(1, 11)],
        "big": [
            value(i, "URL", f"https://example.org/big/{i:03d}/{'b' * 40}") for i in range(1, 41)
        ],
        "empty": [value(7, "HS_ADMIN_LIKE", "x")],
    }
    for suffix, values in records.items():
        await registry.handles.create(admin, f"{prefix}/{suffix}", values, overwrite=False)
    await registry.handles.create(
        admin, OID, [value(1, "URL", "https://example.org/oid/7")], overwrite=False
    )
    return prefix


def texts(response: dns.message.Message, rdtype: int) -> list[str]:
    return [
        rdata.to_text() for rrset in response.answer if rrset.rdtype == rdtype for rdata in rrset
    ]


REFERENCES = [
    pytest.param(
        kind,
        marks=needs(server_binary(kind) is not None, kind),
    )
    for kind in ("knot", "nsd")
]
