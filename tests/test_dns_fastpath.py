"""The DNS fast path answers exactly what the slow path would: cached answers equal
fresh ones for generated queries in any letter case, and garbage is answered alike or
not at all.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.dns.service import MAX_CACHED_ANSWER, DnsService
from resolver.resolution import Resolver
from tests.dns_zone import OID, ZONE, Zone

QNAMES = ["88.100.1/abc", "88.100.1/mid", "88.100.1/big", "88.100.1/nope", OID, "88.100.1/设备-001"]


QTYPES = ["TXT", "NAPTR", "URI", "A", "ANY", "SOA", "NS", "AXFR", "CNAME"]


@st.composite
def queries(draw: st.DrawFn) -> tuple[int, str, str, dict[str, object], int]:
    pick = draw(st.integers(0, len(QNAMES) + 3))
    qtype = draw(st.sampled_from(QTYPES))
    edns = draw(st.sampled_from([False, 0, 1]))
    options: dict[str, object] = {"use_edns": edns}
    if edns is not False:
        options["payload"] = draw(st.sampled_from([512, 1232, 4096, 100]))
        options["want_dnssec"] = draw(st.booleans())
    flags = draw(st.sampled_from([0, dns.flags.RD, dns.flags.CD, dns.flags.RD | dns.flags.CD]))
    return pick, qtype, draw(st.sampled_from(["lower", "upper", "mixed"])), options, flags


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=queries(), qid=st.integers(0, 0xFFFF), other_id=st.integers(0, 0xFFFF))
async def test_cached_answers_equal_slow_path_answers(
    seeded_zone: Zone,
    query: tuple[int, str, str, dict[str, object], int],
    qid: int,
    other_id: int,
) -> None:
    zone = seeded_zone
    pick, qtype, case, options, flags = query
    if pick < len(QNAMES):
        qname = zone.name(QNAMES[pick])
    else:
        qname = [ZONE, f"ns1.{ZONE}", f"1.100.88.{ZONE}", "example.com."][pick - len(QNAMES)]
    qname = {"lower": qname, "upper": qname.upper(), "mixed": qname.title()}[case]
    message = dns.message.make_query(qname, qtype, **options)  # type: ignore[arg-type]
    message.flags = dns.flags.Flag(flags)
    for udp in (True, False):
        message.id = qid
        data = message.to_wire()
        warm = await zone.service.handle(data, udp=udp)  # fills the cache where it may
        cold = DnsService(Resolver(zone.registry), zone.names, ns_address="127.0.0.1")
        await cold.start()
        assert warm == await cold.handle(data, udp=udp)
        again = other_id.to_bytes(2, "big") + data[2:]
        cached = zone.service.fast(again, udp=udp)
        # The same question spelt in other letters (0x20 resolvers): the same entry.
        swapped = dns.message.make_query(qname.swapcase(), qtype, **options)  # type: ignore[arg-type]
        swapped.flags, swapped.id = message.flags, other_id
        other_case = swapped.to_wire()
        hit = zone.service.fast(other_case, udp=udp)
        assert (hit is None) == (cached is None)
        if cached is not None:
            assert cached == await cold.handle(again, udp=udp)
            assert hit == await cold.handle(other_case, udp=udp)
        else:  # only what is about this very query's bytes stays uncached
            assert warm is not None
            reply = dns.message.from_wire(warm)
            assert len(warm) > MAX_CACHED_ANSWER or reply.rcode() in (
                dns.rcode.BADVERS,
                dns.rcode.FORMERR,
                dns.rcode.NOTIMP,
            )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(min_size=0, max_size=80), base=st.sampled_from(QTYPES))
async def test_garbage_is_answered_alike_or_not_at_all(
    seeded_zone: Zone, data: bytes, base: str
) -> None:
    zone = seeded_zone
    good = dns.message.make_query(zone.name("88.100.1/abc"), base).to_wire()
    for query in (data, good[: len(data) % len(good)] + data, good[:12] + data):
        first = await zone.service.handle(query, udp=True)
        if first is not None:
            assert first[:2] == query[:2] and first[2] & 0x80  # an answer, with the id
            assert dns.message.from_wire(first).id == int.from_bytes(query[:2], "big")
        cached = zone.service.fast(query, udp=True)
        assert cached is None or cached == first
