"""Response rate limiting of the DNS zone: drops and slips over UDP on loopback, TCP never
limited, loopback exempt by default; the token bucket and its table on their own.
"""

from __future__ import annotations

import asyncio
import socket

import dns.flags
import dns.message
import pytest

from registry.services import Actor
from resolver.dns.rrl import RateLimit, ResponseRateLimiter, Verdict
from tests.dns_zone import ZONE, Starter, seed


async def test_rate_limit_drops_and_slips(start_zone: Starter, admin: Actor) -> None:
    from prometheus_client import REGISTRY

    def counted(action: str) -> float:
        return (
            REGISTRY.get_sample_value(
                "idnode_rate_limited_total", {"protocol": "dns", "action": action}
            )
            or 0
        )

    zone = await start_zone(RateLimit(rate=1, burst=5, slip=2, exempt=()))
    await seed(zone, admin)
    before = counted("dropped"), counted("slipped")
    qname = zone.name("88.100.1/abc")
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (zone.host, zone.port))
        for i in range(30):
            query = dns.message.make_query(qname, "TXT")
            query.id = i
            await loop.sock_sendall(sock, query.to_wire())
        replies = []
        while True:
            try:
                replies.append(await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.5))
            except TimeoutError:
                break
    messages = [dns.message.from_wire(r) for r in replies]
    full = [m for m in messages if m.answer]
    slipped = [m for m in messages if m.flags & dns.flags.TC]
    assert 5 <= len(full) <= 6  # the burst (and at most one token refilled meanwhile)
    assert 11 <= len(slipped) <= 13  # every second one of the rest
    assert all(not m.answer and m.question[0].name.to_text() == qname for m in slipped)
    assert all(
        len(r) <= len(dns.message.make_query(qname, "TXT").to_wire())
        for r in replies
        if dns.message.from_wire(r).flags & dns.flags.TC
    )
    assert counted("slipped") - before[1] == len(slipped)
    assert counted("dropped") - before[0] == 30 - len(full) - len(slipped)
    # TCP is never limited: a client told to come back over TCP gets its answer.
    over_tcp = await zone.ask(qname, "TXT", tcp=True)
    assert len(over_tcp.answer[0]) == 5


async def test_loopback_is_exempt_by_default(start_zone: Starter) -> None:
    zone = await start_zone(RateLimit(rate=1, burst=1, slip=2))
    for _ in range(10):
        assert (await zone.ask(ZONE, "SOA")).answer


def test_token_bucket_refills_slips_and_groups_ipv6() -> None:
    now = [100.0]
    limiter = ResponseRateLimiter(
        RateLimit(rate=10, burst=3, slip=3, exempt=("10.9.0.0/16",)), clock=lambda: now[0]
    )
    verdicts = [limiter.check("192.0.2.1") for _ in range(9)]
    assert verdicts[:3] == [Verdict.SEND] * 3
    assert verdicts[3:] == [Verdict.DROP, Verdict.DROP, Verdict.SLIP] * 2
    assert (limiter.dropped, limiter.slipped) == (4, 2)
    assert limiter.check("192.0.2.2") is Verdict.SEND  # another client has its own bucket
    now[0] += 0.11  # a token back after 1/rate seconds
    assert limiter.check("192.0.2.1") is Verdict.SEND
    assert limiter.check("192.0.2.1") is not Verdict.SEND
    now[0] += 10  # never more than the burst
    assert [limiter.check("192.0.2.1") for _ in range(4)].count(Verdict.SEND) == 3
    # One /64 is one client; another /64 is another.
    assert [limiter.check(f"2001:db8::{i}") for i in range(3)] == [Verdict.SEND] * 3
    assert limiter.check("2001:db8::ffff") is not Verdict.SEND
    assert limiter.check("2001:db8:0:1::1") is Verdict.SEND
    assert all(limiter.check("10.9.3.4") is Verdict.SEND for _ in range(50))  # exempt
    off = ResponseRateLimiter(RateLimit(rate=0))
    assert all(off.check("192.0.2.1") is Verdict.SEND for _ in range(1000))


def test_rate_limit_table_keeps_the_busy_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    from resolver.dns import rrl

    monkeypatch.setattr(rrl, "MAX_CLIENTS", 10)
    now = [0.0]
    limiter = ResponseRateLimiter(
        RateLimit(rate=1, burst=2, slip=0, exempt=()), clock=lambda: now[0]
    )
    victim = "192.0.2.1"
    assert [limiter.check(victim) for _ in range(3)][-1] is Verdict.DROP
    for i in range(1000):  # one /64 is one client, however many addresses it uses
        limiter.check(f"2001:db8::{i:x}")
        if i % 100 == 0:
            assert limiter.check(victim) is Verdict.DROP
    for i in range(8):  # new clients push out the one seen longest ago, not the busy one
        limiter.check(f"198.51.100.{i}")
        assert limiter.check(victim) is Verdict.DROP
