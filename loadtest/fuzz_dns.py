"""DNS lanes of the fuzzing run: the generated inputs (random bytes, dnspython
queries and their mutants) and the node's DNS port over UDP and pipelined TCP.
"""

from __future__ import annotations

import asyncio
import random
import re
import struct
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode

from .demo_node import HOST
from .fuzz_lanes import WINDOW, Inputs, Lane, Outstanding, TcpStream, judge, pump
from .mix import DemoMix
from .oracle import check_dns_answer, dns_answer_owed

_QTYPES = (
    "TXT",
    "TXT",
    "URI",
    "NAPTR",
    "A",
    "AAAA",
    "ANY",
    "SOA",
    "NS",
    "AXFR",
    "IXFR",
    "OPT",
    "MAILA",
    "TSIG",
    "CNAME",
    "TYPE65000",
)


_OPCODES_DNS = (dns.opcode.QUERY,) * 8 + (
    dns.opcode.NOTIFY,
    dns.opcode.STATUS,
    dns.opcode.UPDATE,
    dns.opcode.IQUERY,
)


class DnsInputs(Inputs):
    """DNS inputs: 15% random bytes, 35% dnspython queries, 50% their mutants."""

    def __init__(self, rng: random.Random, mix: DemoMix, names: list[str]) -> None:
        self.rng = rng
        zone = mix.zone.zone.to_text()
        self.qnames = [mix.dns_name(n) for n in names[:400]]
        self.qnames += [
            zone,
            f"ns1.{zone}",
            f"1.100.88.{zone}",
            f"_.1.100.88.{zone}",
            f"oid-res.{zone}",
            f"1.86.156.2.1.oid-res.{zone}",
            f"nothing._.1.100.88.{zone}",
            "example.com.",
            ".",
        ]
        self.seeds = [self.fresh() for _ in range(256)]

    def fresh(self) -> bytes:
        rng = self.rng
        qname = rng.choice(self.qnames)
        if rng.random() < 0.1:
            qname = (
                "".join(rng.choice("abcXYZ-_09.") for _ in range(rng.randint(1, 30))) + "." + qname
            )
            qname = re.sub(r"\.{2,}", ".", qname).lstrip(".") or "."
        try:
            query = dns.message.make_query(
                qname,
                rng.choice(_QTYPES),
                rdclass=rng.choice(("IN", "IN", "IN", "CH", "ANY", "NONE")),
                use_edns=rng.choice((None, 0, 0, 1)),
                payload=rng.choice((512, 1232, 4096, 0)),
                want_dnssec=rng.random() < 0.2,
            )
        except (dns.exception.DNSException, ValueError):
            return rng.randbytes(rng.randint(12, 60))
        query.flags = dns.flags.Flag(
            rng.choice((dns.flags.RD, 0, dns.flags.CD, dns.flags.AD, dns.flags.RD | dns.flags.TC))
        )
        query.set_opcode(rng.choice(_OPCODES_DNS))
        return bytes(query.to_wire())


class DnsUdp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.outstanding = Outstanding()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 2:
            self.outstanding.answer(int.from_bytes(data[:2], "big"), data)


async def run_dns_udp(lane: Lane, inputs: DnsInputs, port: int, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(DnsUdp, remote_addr=(HOST, port))
    free = list(range(1 << 16))  # ids in use at once never alike; reused 65,000 queries later

    async def one(data: bytes) -> None:
        if not dns_answer_owed(data):
            transport.sendto(data)
            lane.unchecked += 1
            return
        qid = free.pop()
        query = struct.pack(">H", qid) + data[2:]
        try:
            got = await protocol.outstanding.exchange_datagram(
                lane, transport, lambda: (qid, query)
            )
        finally:
            free.insert(0, qid)
        if got is not None:
            judge(lane, query, check_dns_answer, query, got[2], udp=True)

    try:
        await pump(lane, inputs.next, one, deadline)
    finally:
        transport.close()


def _dns_frame(buffer: bytearray) -> tuple[int, bytes] | None:
    if len(buffer) < 2:
        return None
    end = 2 + int.from_bytes(buffer[:2], "big")
    if len(buffer) < end:
        return None
    raw = bytes(buffer[2:end])
    del buffer[:end]
    return int.from_bytes(raw[:2], "big") if len(raw) >= 2 else -1, raw


async def run_dns_tcp(lane: Lane, inputs: DnsInputs, port: int, deadline: float) -> None:
    streams = [TcpStream(port, _dns_frame) for _ in range(2)]
    for stream in streams:
        await stream.connect()
    free = list(range(1 << 16))

    async def one(data: bytes) -> None:
        if not dns_answer_owed(data):
            lane.silent += 1  # a runt or a response: the node must say nothing
            return
        qid = free.pop()
        stream = streams[qid % len(streams)]
        data = struct.pack(">H", qid) + data[2:65535]
        try:
            future = await stream.send(qid, struct.pack(">H", len(data)) + data)
            raw = await stream.outstanding.wait(lane, qid, future)
            if raw is None:
                lane.fail("no answer (TCP)", data)
                return
            judge(lane, data, check_dns_answer, data, raw, udp=False)
        finally:
            free.insert(0, qid)

    try:
        await pump(lane, inputs.next, one, deadline, window=WINDOW // 2)
    finally:
        for stream in streams:
            lane.outcomes["connections lost"] += stream.lost
            await stream.close()
