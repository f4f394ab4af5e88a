"""The DNS zone served over real UDP and TCP sockets on loopback, checked with
real clients: dig, kdig and dnspython's stub resolver, and against a reference server
serving the same records. Rate limiting: test_dns_rrl.py; the fast path:
test_dns_fastpath.py; hostile input: test_dns_hostile.py.
"""

from __future__ import annotations

import asyncio
import shutil
import struct

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from loadtest.refdns import ReferenceServer
from registry.services import Actor
from tests.dns_zone import LONG, OID, REFERENCES, TIMEOUT, ZONE, Starter, Zone, seed, texts
from tests.factories import handle_value as value
from tests.factories import needs

needs_dig = needs(shutil.which("dig") is not None, "dig")


needs_kdig = needs(shutil.which("kdig") is not None, "kdig")


# --- with dnspython as the client --------------------------------------------------------


async def test_records_of_an_identifier(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    qname = zone.name("88.100.1/abc")
    assert qname == f"abc._.1.100.88.{ZONE}"
    txt = await zone.ask(qname, "TXT")
    assert txt.rcode() == dns.rcode.NOERROR and txt.flags & dns.flags.AA
    assert texts(txt, dns.rdatatype.TXT) == [
        '"hdl=88.100.1/abc"',
        '"idx=1" "type=URL" "data=https://example.org/abc"',
        '"idx=2" "type=EMAIL" "data=ops@example.org"',
        '"idx=3" "type=URL" "data=https://mirror.example.org/abc"',
        '"idx=5" "type=BIN" "b64=AAH/"',  # bytes that are no text; 4 is restricted
    ]
    naptr = await zone.ask(qname, "NAPTR")
    assert texts(naptr, dns.rdatatype.NAPTR) == [
        '100 10 "U" "HDL+URL" "!^.*$!https://example.org/abc!" .',
        '100 20 "U" "HDL+URL" "!^.*$!https://mirror.example.org/abc!" .',
    ]
    uri = await zone.ask(qname, "URI", tcp=True)
    assert texts(uri, dns.rdatatype.URI) == [
        '1 1 "https://example.org/abc"',
        '2 1 "https://mirror.example.org/abc"',
    ]


async def test_apex_and_nameserver(zone: Zone) -> None:
    soa = await zone.ask(ZONE, "SOA")
    assert soa.flags & dns.flags.AA and soa.answer[0].rdtype == dns.rdatatype.SOA
    assert soa.answer[0][0].mname.to_text() == f"ns1.{ZONE}"
    ns = await zone.ask(ZONE, "NS")
    assert texts(ns, dns.rdatatype.NS) == [f"ns1.{ZONE}"]
    assert [r.to_text() for r in ns.additional[0]] == ["127.0.0.1"]  # glue
    glue = await zone.ask(f"NS1.{ZONE}", "A")
    assert texts(glue, dns.rdatatype.A) == ["127.0.0.1"]


async def test_id_and_question_are_echoed_exactly(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    mixed = zone.name("88.100.1/abc").replace("abc._.1.100.88.hdl", "AbC._.1.100.88.HdL")
    for attempt in range(3):  # the slow path, then the cached answer twice
        query = dns.message.make_query(mixed, "TXT", use_edns=False)
        query.id = 4242 + attempt
        sent = query.to_wire()
        wire = await zone.raw_udp(sent)
        assert wire is not None
        reply = dns.message.from_wire(wire)
        assert reply.id == query.id
        assert reply.question[0].name.to_text() == mixed  # letter for letter
        assert reply.answer[0].name.to_text() == mixed
        assert wire[12 : len(sent)] == sent[12:]  # the question section, byte for byte


async def test_negative_answers_carry_the_soa(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    for tcp in (False, True):
        missing = await zone.ask(zone.name("88.100.1/nope"), "TXT", tcp=tcp)
        assert missing.rcode() == dns.rcode.NXDOMAIN and missing.flags & dns.flags.AA
        assert not missing.answer
        assert missing.authority[0].rdtype == dns.rdatatype.SOA
        assert missing.authority[0].ttl == missing.authority[0][0].minimum
        nodata = await zone.ask(zone.name("88.100.1/abc"), "A", tcp=tcp)
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        assert nodata.authority[0].rdtype == dns.rdatatype.SOA
        # A prefix is an existing name with no records of its own.
        branch = await zone.ask(f"1.100.88.{ZONE}", "TXT", tcp=tcp)
        assert (branch.rcode(), branch.answer) == (dns.rcode.NOERROR, [])
        other_prefix = await zone.ask(f"9.100.88.{ZONE}", "TXT", tcp=tcp)
        assert other_prefix.rcode() == dns.rcode.NXDOMAIN
        garbage = await zone.ask(f"b32-!!._.1.100.88.{ZONE}", "TXT", tcp=tcp)
        assert garbage.rcode() == dns.rcode.NXDOMAIN


async def test_refused_outside_the_zone_and_for_transfers(zone: Zone) -> None:
    outside = await zone.ask("example.com.", "A")
    assert outside.rcode() == dns.rcode.REFUSED and not outside.flags & dns.flags.AA
    for rdtype in ("AXFR", "IXFR"):
        transfer = await zone.ask(ZONE, rdtype, tcp=True)
        assert transfer.rcode() == dns.rcode.REFUSED
    chaos = dns.message.make_query("version.bind.", "TXT", rdclass="CH")
    assert (await zone.send(chaos)).rcode() == dns.rcode.REFUSED


async def test_other_opcodes_are_not_implemented(zone: Zone) -> None:
    for opcode in (dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS):
        query = dns.message.make_query(ZONE, "SOA")
        query.set_opcode(opcode)
        reply = await zone.send(query)
        assert reply.rcode() == dns.rcode.NOTIMP and reply.opcode() == opcode


async def test_malformed_queries_get_formerr_or_nothing(zone: Zone) -> None:
    good = dns.message.make_query(ZONE, "SOA", use_edns=False).to_wire()
    cases = {
        "cut in the question": good[:-3],
        "two questions claimed": good[:4] + b"\x00\x02" + good[6:],
        "label past the end": good[:12] + b"\x3fabc",
        "trailing garbage": good + b"\x00\x01",
    }
    for what, data in cases.items():
        wire = await zone.raw_udp(data)
        assert wire is not None, what
        assert wire[:2] == data[:2], what
        assert wire[3] & 0x0F == dns.rcode.FORMERR, what
        assert len(wire) <= max(len(data), 12), what
    assert await zone.raw_udp(b"\x12\x34\x01") is None  # a runt: nothing to answer
    response_bit = bytearray(good)
    response_bit[2] |= 0x80
    assert await zone.raw_udp(bytes(response_bit)) is None  # never answer an answer
    # The server is still there.
    assert (await zone.ask(ZONE, "SOA")).rcode() == dns.rcode.NOERROR


async def test_edns(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    mid = zone.name("88.100.1/mid")
    with_edns = await zone.ask(mid, "TXT", use_edns=0, payload=4096)
    assert with_edns.edns == 0 and with_edns.payload == 1232
    assert not with_edns.flags & dns.flags.TC and len(with_edns.answer[0]) == 11
    plain = await zone.ask(mid, "TXT", use_edns=False)
    assert plain.edns == -1 and plain.flags & dns.flags.TC and not plain.answer
    small = await zone.ask(mid, "TXT", use_edns=0, payload=512)
    assert small.flags & dns.flags.TC and small.edns == 0
    over_tcp = await zone.ask(mid, "TXT", use_edns=False, tcp=True)
    assert not over_tcp.flags & dns.flags.TC and len(over_tcp.answer[0]) == 11
    big = zone.name("88.100.1/big")
    too_big = await zone.ask(big, "TXT", use_edns=0, payload=65000)
    assert too_big.flags & dns.flags.TC  # our limit is 1232 whatever the client offers
    whole = await zone.ask(big, "TXT", tcp=True)
    assert len(whole.to_wire()) > 4000 and len(whole.answer[0]) == 41
    future = await zone.ask(ZONE, "SOA", use_edns=1)
    assert future.rcode() == dns.rcode.BADVERS and future.edns == 0
    dnssec = await zone.ask(ZONE, "SOA", want_dnssec=True)
    assert dnssec.ednsflags & dns.flags.DO
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)
    with_option = await zone.ask(ZONE, "SOA", use_edns=0, options=[cookie])
    assert with_option.rcode() == dns.rcode.NOERROR and with_option.edns == 0


async def test_any_is_answered_minimally(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    for qname in (zone.name("88.100.1/abc"), ZONE):
        reply = await zone.ask(qname, "ANY")
        assert texts(reply, dns.rdatatype.HINFO) == ['"RFC8482" ""']
        assert len(reply.answer) == 1


async def test_hashed_names_for_long_handles(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    qname = zone.name(f"88.100.1/{LONG}")
    assert qname.startswith("h-") and len(qname) < 255
    txt = await zone.ask(qname, "TXT")
    assert texts(txt, dns.rdatatype.TXT)[0] == f'"hdl=88.100.1/{LONG}"'
    wrong = qname.replace(qname[2:8], "000000")
    assert (await zone.ask(wrong, "TXT")).rcode() == dns.rcode.NXDOMAIN


async def test_unicode_and_case_are_kept(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    for suffix in ("设备-001", "SN-2026-0001"):
        qname = zone.name(f"88.100.1/{suffix}")
        assert qname.startswith("b32-")
        txt = await zone.ask(qname, "TXT")
        hdl = txt.answer[0][0].strings[0]
        assert hdl.decode("utf-8") == f"hdl=88.100.1/{suffix}"
    lower = zone.name("88.100.1/sn-2026-0001")
    assert (await zone.ask(lower, "TXT")).rcode() == dns.rcode.NXDOMAIN  # suffixes keep case


async def test_oid_names(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    qname = zone.name(OID)
    assert qname == f"7.1.1.86.156.2.1.oid-res.{ZONE}"
    naptr = await zone.ask(qname, "NAPTR")
    assert texts(naptr, dns.rdatatype.NAPTR) == [
        '100 10 "U" "UINF" "!^.*$!https://example.org/oid/7!" .'
    ]
    txt = await zone.ask(qname, "TXT")
    assert texts(txt, dns.rdatatype.TXT)[0] == f'"oid={OID}"'
    for arcs in ("1.1.86.156.2.1", "86.156.2.1", "1"):  # the enterprise's arc, the tree above
        above = await zone.ask(f"{arcs}.oid-res.{ZONE}", "NAPTR")
        assert (above.rcode(), above.answer) == (dns.rcode.NOERROR, []), arcs
    for arcs in ("8.1.1.86.156.2.1", "3.6.1", "2.1.1.86.156.2.1"):
        missing = await zone.ask(f"{arcs}.oid-res.{ZONE}", "NAPTR")
        assert missing.rcode() == dns.rcode.NXDOMAIN, arcs


async def test_several_queries_on_one_tcp_connection(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    names = ["88.100.1/abc", "88.100.1/SN-2026-0001", "88.100.1/nope", OID]
    queries = [dns.message.make_query(zone.name(n), "TXT") for n in names]
    queries.append(dns.message.make_query(ZONE, "SOA"))
    reader, writer = await asyncio.open_connection(zone.host, zone.port)
    try:
        # All at once in one segment, then one more after the answers: pipelining.
        writer.write(b"".join(struct.pack("!H", len(w)) + w for w in map(_wire, queries)))
        answers = {}
        for _ in queries:
            length = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TIMEOUT))
            reply = dns.message.from_wire(await reader.readexactly(length[0]))
            answers[reply.id] = reply
        assert {q.id for q in queries} == set(answers)
        assert answers[queries[2].id].rcode() == dns.rcode.NXDOMAIN
        assert answers[queries[0].id].answer
        again = dns.message.make_query(ZONE, "NS")
        writer.write(struct.pack("!H", len(_wire(again))) + _wire(again))
        length = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TIMEOUT))
        assert dns.message.from_wire(await reader.readexactly(length[0])).id == again.id
    finally:
        writer.close()


def _wire(message: dns.message.Message) -> bytes:
    return message.to_wire()


async def test_idle_tcp_connections_are_closed(zone: Zone) -> None:
    reader, writer = await asyncio.open_connection(zone.host, zone.port)
    try:
        assert await asyncio.wait_for(reader.read(), 5.0) == b""  # idle=1.0 in the fixture
    finally:
        writer.close()


async def test_stub_resolver(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    for tcp in (False, True):
        stub = zone.stub()
        answer = await stub.resolve(zone.name("88.100.1/abc"), "URI", tcp=tcp)
        assert [r.target for r in answer] == [
            b"https://example.org/abc",
            b"https://mirror.example.org/abc",
        ]
        assert answer.response.flags & dns.flags.AA
        with pytest.raises(dns.resolver.NXDOMAIN):
            await stub.resolve(zone.name("88.100.1/nope"), "TXT", tcp=tcp)
        with pytest.raises(dns.resolver.NoAnswer):
            await stub.resolve(zone.name("88.100.1/abc"), "AAAA", tcp=tcp)
        oid = await stub.resolve(zone.name(OID), "NAPTR", tcp=tcp)
        assert [r.service for r in oid] == [b"UINF"]
    # The mid-sized answer comes truncated over UDP; the stub resolver goes on over TCP.
    stub = zone.stub()
    stub.use_edns(-1)
    mid = await stub.resolve(zone.name("88.100.1/mid"), "TXT")
    assert len(mid) == 11


async def test_changes_reach_cached_answers(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    qname = zone.name("88.100.1/abc")
    first = await zone.ask(qname, "URI")
    query = dns.message.make_query(qname, "URI")
    assert zone.service.fast(query.to_wire(), udp=True) is not None  # cached now
    await zone.registry.handles.set_values(
        admin, "88.100.1/abc", [value(1, "URL", "https://moved.example.org/abc")], overwrite=True
    )
    zone.resolver.on_changes([])  # what the change feed does when the write is seen
    assert zone.service.fast(query.to_wire(), udp=True) is None
    second = await zone.ask(qname, "URI")
    assert texts(second, dns.rdatatype.URI)[0] == '1 1 "https://moved.example.org/abc"'
    assert texts(first, dns.rdatatype.URI)[0] == '1 1 "https://example.org/abc"'
    created = zone.name("88.100.1/fresh")
    assert (await zone.ask(created, "TXT")).rcode() == dns.rcode.NXDOMAIN  # cached negative
    await zone.registry.handles.create(
        admin, "88.100.1/fresh", [value(1, "URL", "https://example.org/fresh")], overwrite=False
    )
    zone.resolver.on_changes([])
    assert (await zone.ask(created, "TXT")).rcode() == dns.rcode.NOERROR


async def test_ipv6_listener(start_zone: Starter, admin: Actor) -> None:
    try:
        zone = await start_zone(host="::1")
    except Exception as exc:  # no IPv6 loopback on this machine
        pytest.skip(f"::1 unavailable: {exc}")
    await seed(zone, admin)
    for tcp in (False, True):
        reply = await zone.ask(zone.name("88.100.1/abc"), "NAPTR", tcp=tcp)
        assert len(texts(reply, dns.rdatatype.NAPTR)) == 2


async def test_store_failure_is_servfail_not_silence(
    zone: Zone, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(zone, admin)

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("database unreachable")

    monkeypatch.setattr(zone.resolver, "resolve", unreachable)
    qname = zone.name("88.100.1/abc")
    for tcp in (False, True):
        reply = await zone.ask(qname, "TXT", tcp=tcp)
        assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
    monkeypatch.undo()
    assert (await zone.ask(qname, "TXT")).answer  # nothing bad was cached


# --- what the zone holds -----------------------------------------------------------------


async def test_names_with_identifiers_below_exist(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    long_suffix = "参数-" * 12  # 60 UTF-8 bytes: two labels of base32hex
    await zone.registry.handles.create(
        admin, f"88.100.1/{long_suffix}", [value(1, "URL", "https://x.example")], overwrite=False
    )
    full = dns.name.from_text(zone.name(f"88.100.1/{long_suffix}"))
    assert full.labels[0].startswith(b"b32-") and not full.labels[1].startswith(b"b32-")
    parent = full.parent()
    for rdtype in ("TXT", "ANY"):
        empty = await zone.ask(parent.to_text(), rdtype)
        assert (empty.rcode(), empty.answer) == (dns.rcode.NOERROR, []), rdtype  # RFC 8020
        assert empty.authority[0].rdtype == dns.rdatatype.SOA
    sibling = dns.name.Name((b"x" + parent.labels[0][1:], *parent.labels[1:]))
    assert (await zone.ask(sibling.to_text(), "TXT")).rcode() == dns.rcode.NXDOMAIN
    assert (await zone.ask(full.to_text(), "URI")).answer


async def test_each_identifier_has_one_dns_name(zone: Zone, admin: Actor) -> None:
    from registry.dnsnames import suffix_digest

    await seed(zone, admin)
    key = zone.resolver.parse("88.100.1/abc").key
    others = [
        f"1.100.88.oid-res.{ZONE}",  # a handle's prefix spelt as OID arcs
        f"h-{suffix_digest(key)}._.1.100.88.{ZONE}",  # the hashed form of a short name
        f"b32-c5h66._.1.100.88.{ZONE}",  # "abc" in base32hex, though plain
    ]
    for qname in others:
        reply = await zone.ask(qname, "TXT")
        assert reply.rcode() == dns.rcode.NXDOMAIN, qname
    assert (await zone.ask(zone.name("88.100.1/abc"), "TXT")).answer


async def test_negative_answers_follow_the_serial(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    nodata = dns.message.make_query(zone.name("88.100.1/abc"), "A")
    first = await zone.send(nodata)
    assert zone.service.fast(nodata.to_wire(), udp=True) is not None  # cached
    await zone.registry.handles.create(
        admin, "88.100.1/later", [value(1, "URL", "https://x.example")], overwrite=False
    )
    second = await zone.send(nodata)
    assert second.authority[0][0].serial > first.authority[0][0].serial
    apex = await zone.ask(ZONE, "SOA")
    assert apex.answer[0][0].serial == second.authority[0][0].serial


# --- dig and kdig --------------------------------------------------------------------


@needs_dig
async def test_dig(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    qname = zone.name("88.100.1/abc")
    out = await zone.tool("dig", "+norec", qname, "NAPTR")
    assert "status: NOERROR" in out and "flags: qr aa;" in out
    assert '100 10 "U" "HDL+URL" "!^.*$!https://example.org/abc!" .' in out
    assert "EDNS: version: 0, flags:; udp: 1232" in out
    out = await zone.tool("dig", "+tcp", qname, "URI")
    assert '1 1 "https://example.org/abc"' in out and "(TCP)" in out
    out = await zone.tool("dig", zone.name("88.100.1/nope"), "TXT")
    assert "status: NXDOMAIN" in out and "AUTHORITY: 1" in out and "IN\tSOA\tns1." in out
    out = await zone.tool("dig", qname, "A")
    assert "status: NOERROR" in out and "ANSWER: 0, AUTHORITY: 1" in out
    out = await zone.tool("dig", "example.com", "A")
    assert "status: REFUSED" in out
    out = await zone.tool("dig", ZONE, "AXFR")
    assert "Transfer failed" in out
    out = await zone.tool("dig", "+noednsneg", "+edns=1", ZONE, "SOA")
    assert "status: BADVERS" in out
    out = await zone.tool("dig", qname, "ANY")
    assert '"RFC8482" ""' in out
    mixed = qname.upper()
    out = await zone.tool("dig", mixed, "TXT")
    assert f";{mixed}" in out  # the question comes back as asked
    # Too big for 512 bytes without EDNS: TC set, and dig goes on over TCP by itself.
    out = await zone.tool("dig", "+noedns", "+ignore", zone.name("88.100.1/mid"), "TXT")
    assert "flags: qr aa tc" in out and "ANSWER: 0" in out
    out = await zone.tool("dig", "+noedns", zone.name("88.100.1/mid"), "TXT")
    assert "Truncated, retrying in TCP mode" in out and "ANSWER: 11" in out
    out = await zone.tool("dig", "+header-only", "+opcode=notify", ZONE, "SOA")
    assert "status: NOTIMP" in out


@needs_kdig
async def test_kdig(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    abc, sn = zone.name("88.100.1/abc"), zone.name("88.100.1/SN-2026-0001")
    # Several queries on one kept-open TCP connection.
    out = await zone.tool("kdig", "+tcp", "+keepopen", abc, "TXT", sn, "URI", ZONE, "SOA")
    assert out.count("status: NOERROR") == 3, out
    assert '"hdl=88.100.1/abc"' in out and '"https://example.org/sn/1"' in out
    out = await zone.tool("kdig", zone.name(OID), "NAPTR")
    assert '"UINF"' in out and "Flags: qr aa" in out
    out = await zone.tool("kdig", "+bufsize=512", zone.name("88.100.1/mid"), "TXT")
    assert "truncated reply" in out and "retrying over TCP" in out and "ANSWER: 11" in out
    out = await zone.tool("kdig", "+edns=1", "+noignore", ZONE, "SOA")
    assert "BADVERS" in out


# --- the same zone from a reference server, answer for answer ----------------------------


def _comparable(reply: dns.message.Message) -> dict[str, object]:
    """What two correct authoritative servers must agree on."""

    def rrsets(section: list[dns.rrset.RRset]) -> set[tuple[object, ...]]:
        return {
            (r.name.to_text().lower(), r.rdtype, r.ttl, tuple(sorted(x.to_text() for x in r)))
            for r in section
        }

    truncated = bool(reply.flags & dns.flags.TC)
    seen: dict[str, object] = {
        "rcode": dns.rcode.to_text(reply.rcode()),
        "aa": bool(reply.flags & dns.flags.AA),
        "tc": truncated,
        "edns": reply.edns,
    }
    if not truncated:
        seen["answer"] = rrsets(reply.answer)
        if not reply.answer and reply.rcode() != dns.rcode.REFUSED:
            seen["authority"] = rrsets(reply.authority)  # the negative answer's SOA
    return seen


@pytest.mark.parametrize("kind", REFERENCES)
async def test_same_answers_as_a_reference_server(
    seeded_zone: Zone, kind: str, database_url: str
) -> None:
    if "postgresql" in database_url:
        pytest.skip("the zone is the same whatever the database; once is enough")
    zone = seeded_zone
    identifiers = [f"88.100.1/{s}" for s in ("abc", "SN-2026-0001", "设备-001", LONG, "mid")]
    identifiers += [OID, "1.2.156.86.1.1"]  # an OID, and the enterprise's arc (its prefix)
    text = await zone.service.zone_text(identifiers)
    names = [zone.name(i) for i in identifiers]
    names += [
        zone.name("88.100.1/nope"),
        f"1.100.88.{ZONE}",
        f"_.1.100.88.{ZONE}",
        f"9.100.88.{ZONE}",
        f"oid-res.{ZONE}",
        f"9.9.1.1.86.156.2.1.oid-res.{ZONE}",
        ZONE,
        f"ns1.{ZONE}",
        "example.com.",
    ]
    types = ["TXT", "NAPTR", "URI", "A", "AAAA", "SOA", "NS", "MX"]
    with ReferenceServer(ZONE, text, kind=kind) as reference:
        compared = 0
        for qname in names:
            for rdtype in types:
                for edns in (0, False):
                    query = dns.message.make_query(qname, rdtype, use_edns=edns)
                    ours = await zone.send(query)
                    theirs = await dns.asyncquery.udp(
                        query, reference.host, port=reference.port, timeout=TIMEOUT
                    )
                    assert _comparable(ours) == _comparable(theirs), (qname, rdtype, edns)
                    compared += 1
    assert compared == len(names) * len(types) * 2
