"""Hostile and odd input to the DNS zone on loopback: clients that never read or trickle
their queries, too many connections from one address, answers too large for a message,
meta types asked as queries.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import dns.flags
import dns.message
import dns.rcode

from registry.services import Actor
from resolver.dns import server as srv
from tests.dns_zone import RUNNING, ZONE, Zone, seed
from tests.factories import handle_value as value


async def test_a_client_that_never_reads_cannot_grow_the_server(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    query = dns.message.make_query(zone.name("88.100.1/mid"), "TXT").to_wire()
    frame = struct.pack("!H", len(query)) + query
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((zone.host, zone.port))
        sock.setblocking(False)
        sent = 0
        deadline = loop.time() + 10
        while loop.time() < deadline and sent < 50_000_000:
            try:
                sent += sock.send(frame * 64)
            except BlockingIOError:
                await asyncio.sleep(0.2)  # let the server catch up, if it would
                try:
                    sent += sock.send(frame)
                except BlockingIOError:
                    break  # the server stopped reading: backpressure reached the client
        assert sent < 20_000_000, "the server kept reading what it could not answer"
        (connection,) = zone_connections(zone)
        assert connection.read_paused and connection.write_paused
        buffered = connection.transport.get_write_buffer_size() if connection.transport else 0
        assert buffered < 2_000_000


def zone_connections(zone: Zone) -> list[srv.TcpProtocol]:
    return [c for listeners in RUNNING for c in listeners.peers.connections if c.peer]


async def test_trickling_clients_are_closed_and_counted_per_address(zone: Zone) -> None:
    reader, writer = await asyncio.open_connection(zone.host, zone.port)
    started = asyncio.get_running_loop().time()
    try:
        writer.write(b"\x00\x40")  # a 64-byte query is coming...
        for _ in range(20):  # ...one byte every 0.3 s, never finished
            writer.write(b"\x00")
            await writer.drain()
            if await _closed(reader, 0.3):
                break
        assert asyncio.get_running_loop().time() - started < 4.0  # idle=1.0 in the fixture
    finally:
        writer.close()
    runt_reader, runt_writer = await asyncio.open_connection(zone.host, zone.port)
    runt_writer.write(b"\x00\x00")  # a zero-length "message": no DNS client sends that
    assert await _closed(runt_reader, 0.5)
    runt_writer.close()
    held = [await asyncio.open_connection(zone.host, zone.port) for _ in range(srv.MAX_PER_CLIENT)]
    try:
        extra_reader, extra_writer = await asyncio.open_connection(zone.host, zone.port)
        assert await _closed(extra_reader, 2.0)  # one address, too many connections
        extra_writer.close()
    finally:
        for _, each in held:
            each.close()


async def _closed(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_answers_always_fit_a_message(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    values = [value(i, "NOTE", "n" * 4000) for i in range(1, 21)]
    values += [value(100 + i, "NOTE", f"{i}" * 64) for i in range(1, 1001)]
    await zone.registry.handles.create(admin, "88.100.1/huge", values, overwrite=False)
    reply = await zone.ask(zone.name("88.100.1/huge"), "TXT", tcp=True)
    assert not reply.flags & dns.flags.TC
    strings = [b"".join(r.strings) for r in reply.answer[0]]
    assert 20_000 < len(reply.to_wire()) < 65535
    assert any(s.startswith(b"idx=") and b"size=4000" in s for s in strings)
    assert any(s.startswith(b"omitted=") for s in strings)


async def test_meta_types_are_not_queries(zone: Zone) -> None:
    for rdtype, rcode in (
        ("OPT", dns.rcode.FORMERR),
        ("TSIG", dns.rcode.FORMERR),
        ("MAILA", dns.rcode.NOTIMP),
        ("MAILB", dns.rcode.NOTIMP),
    ):
        reply = await zone.ask(ZONE, rdtype, use_edns=False)
        assert reply.rcode() == rcode, rdtype
