"""Letter case in DNS questions (RFC 4343): every spelling of a name in the zone
gets the answer its canonical spelling gets, with the question's own letters
echoed, over UDP and TCP, from a real node on loopback, checked with dnspython,
dig and a reference server (Knot DNS, NSD) serving the same records.

Resolvers that randomise letter case (the "0x20" defence against spoofing) ask
every name this way, and reject an answer whose question is not spelt as they
spelt it. Identifier suffixes may be case-sensitive: the zone keeps their case
in base32 (``b32-``) or digest (``h-``) labels, so a name's letter case never
carries meaning of its own.
"""

from __future__ import annotations

import asyncio
import random
import shutil

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from idnode.config import Config
from loadtest.refdns import ReferenceServer
from registry.services import Actor
from tests.dns_zone import LONG, OID, REFERENCES, TIMEOUT, ZONE, Starter, Zone, seed, texts
from tests.factories import needs

SPELLINGS = 4
"""Random spellings of each name, besides all upper case and the case swapped."""
SEED = 4343
IDENTIFIERS = {
    "plain": "88.100.1/abc",
    "base32": "88.100.1/SN-2026-0001",
    "unicode": "88.100.1/设备-001",
    "hashed": f"88.100.1/{LONG}",
    "oid": OID,
    "arc": "1.2.156.86.1.1",  # an enterprise's prefix, named by its OID arc
}
IDENTIFIER_TYPES = ("TXT", "NAPTR", "URI", "A")
"""Types the identifiers have, and one they have not (NODATA)."""
OTHER_NAMES = [
    (ZONE, "SOA"),
    (ZONE, "NS"),
    (ZONE, "TXT"),
    (f"ns1.{ZONE}", "A"),
    (f"1.100.88.{ZONE}", "TXT"),  # a prefix's node: no records, names below it
    (f"_.1.100.88.{ZONE}", "TXT"),
    (f"86.156.2.1.oid-res.{ZONE}", "NAPTR"),  # an arc above the node's identifiers
    (f"b32-ad72qchg68r2qc1g60og._.9.100.88.{ZONE}", "TXT"),  # no such prefix
    (f"b32-ad72qchg68r2qc1g60o0._.1.100.88.{ZONE}", "TXT"),  # no such suffix
    (f"h-{'0' * 26}._.1.100.88.{ZONE}", "TXT"),  # no such digest
]


def spellings(name: str, rng: random.Random) -> list[str]:
    """The name in other letters: as a 0x20 resolver spells it, and two extremes."""
    mixed = [
        "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)
        for _ in range(SPELLINGS)
    ]
    return [name.upper(), name.swapcase(), *mixed]


async def questions(zone: Zone) -> list[tuple[str, str]]:
    """Every kind of name the zone has, each with the types worth asking."""
    names = {kind: zone.name(identifier) for kind, identifier in IDENTIFIERS.items()}
    assert names["plain"].startswith("abc._.") and names["base32"].startswith("b32-")
    assert names["unicode"].startswith("b32-") and names["hashed"].startswith("h-")
    assert names["oid"].endswith(f".oid-res.{ZONE}")
    return [(name, rdtype) for name in names.values() for rdtype in IDENTIFIER_TYPES] + OTHER_NAMES


def owners(section: list[dns.rrset.RRset]) -> list[str]:
    return [rrset.name.to_text() for rrset in section]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_every_spelling_gets_the_canonical_answer_in_its_own_letters(
    start_zone: Starter, admin: Actor, tcp: bool
) -> None:
    zone = await start_zone()
    # The canonical answers come from another node on the same database, so that
    # no answer cached here for one spelling stands in for another's.
    canonical_node = await start_zone()
    await seed(zone, admin)
    rng = random.Random(SEED)
    kinds = {dns.rcode.NOERROR: 0, dns.rcode.NXDOMAIN: 0}
    for qname, rdtype in await questions(zone):
        canonical = await canonical_node.ask(qname, rdtype, tcp=tcp)
        kinds[canonical.rcode()] += 1
        for spelt in spellings(qname, rng):
            for attempt in ("first", "again"):  # the first spelling: the slow path
                reply = await zone.ask(spelt, rdtype, tcp=tcp)
                where = (spelt, rdtype, attempt)
                assert reply.rcode() == canonical.rcode(), where
                assert reply.flags == canonical.flags, where
                # dnspython compares names case-insensitively: the same records.
                assert reply.answer == canonical.answer, where
                assert reply.authority == canonical.authority, where
                assert reply.additional == canonical.additional, where
                # ... and the client's letters, exactly, where it will look for them.
                assert reply.question[0].name.to_text() == spelt, where
                assert all(owner == spelt for owner in owners(reply.answer)), where
    assert kinds[dns.rcode.NOERROR] and kinds[dns.rcode.NXDOMAIN]


async def test_each_kind_of_owner_has_its_records_in_any_case(zone: Zone, admin: Actor) -> None:
    """Not merely the same answer as the canonical spelling: the records themselves."""
    await seed(zone, admin)
    rng = random.Random(SEED)
    for kind, identifier in IDENTIFIERS.items():
        tag = "oid" if kind in ("oid", "arc") else "hdl"
        for spelt in spellings(zone.name(identifier), rng):
            txt = await zone.ask(spelt, "TXT")
            first = txt.answer[0][0].strings[0].decode("utf-8")
            assert first == f"{tag}={zone.resolver.parse(identifier).key}", (kind, spelt)
    for spelt in spellings(ZONE, rng):
        soa = await zone.ask(spelt, "SOA")
        assert soa.answer[0][0].mname.to_text().lower() == f"ns1.{ZONE}", spelt
        ns = await zone.ask(spelt, "NS", tcp=True)
        assert [rdata.to_text().lower() for rdata in ns.answer[0]] == [f"ns1.{ZONE}"], spelt
        assert [rdata.to_text() for rdata in ns.additional[0]] == ["127.0.0.1"], spelt
        glue = await zone.ask(f"nS1.{spelt}", "A")
        assert texts(glue, dns.rdatatype.A) == ["127.0.0.1"], spelt


async def test_answers_too_large_for_udp_send_any_spelling_to_tcp(zone: Zone, admin: Actor) -> None:
    """With the UDP amplification bound on (the node's default), a small query for a
    large answer gets TC and nothing else, in whatever case it was asked; the
    client then asks over TCP and gets the records, in its own letters."""
    await seed(zone, admin)
    bound = zone.service.stage.amplification = Config().udp_amplification
    qname = zone.name("88.100.1/mid")
    complete = await zone.ask(qname, "TXT", tcp=True)
    assert len(complete.to_wire()) > bound * len(dns.message.make_query(qname, "TXT").to_wire())
    for spelt in spellings(qname, random.Random(SEED)):
        for _ in range(2):  # the slow path, then the cached answer
            query = dns.message.make_query(spelt, "TXT", use_edns=0, payload=1232)
            truncated = await zone.send(query)
            assert truncated.flags & dns.flags.TC and truncated.rcode() == dns.rcode.NOERROR
            assert not truncated.answer and truncated.question[0].name.to_text() == spelt
            reply, over_tcp = await dns.asyncquery.udp_with_fallback(
                query, zone.host, port=zone.port, timeout=TIMEOUT
            )
            assert over_tcp and reply.answer == complete.answer, spelt
            assert owners(reply.answer) == [spelt]


@needs(shutil.which("dig") is not None, "dig")
async def test_dig_sees_its_question_echoed(zone: Zone, admin: Actor) -> None:
    await seed(zone, admin)
    canonical = zone.name("88.100.1/SN-2026-0001")
    spelt = spellings(canonical, random.Random(SEED))[-1]
    assert spelt != canonical
    for transport, seen in (("+notcp", "(UDP)"), ("+tcp", "(TCP)")):
        out = await zone.tool("dig", "+norec", "+nocookie", transport, spelt, "TXT")
        assert "status: NOERROR" in out and "ANSWER: 2" in out and seen in out, out
        lines = [line.split() for line in out.splitlines()]
        assert [f";{spelt}", "IN", "TXT"] in lines, out  # the question, as asked
        answers = [line for line in out.splitlines() if line.startswith(spelt)]
        assert len(answers) == 2 and '"hdl=88.100.1/SN-2026-0001"' in answers[0], out


def _seen(reply: dns.message.Message) -> dict[str, object]:
    """What two authoritative servers must agree on: answer owners letter for
    letter; the negative answer's SOA (Knot and NSD differ on authority otherwise)."""

    def rrsets(section: list[dns.rrset.RRset], exact: bool) -> list[tuple[object, ...]]:
        return sorted(
            (
                r.name.to_text() if exact else r.name.to_text().lower(),
                r.rdtype,
                r.ttl,
                tuple(sorted(x.to_digestable() for x in r)),  # names in lowercase
            )
            for r in section
        )

    seen: dict[str, object] = {
        "rcode": dns.rcode.to_text(reply.rcode()),
        "aa": bool(reply.flags & dns.flags.AA),
        "tc": bool(reply.flags & dns.flags.TC),
        "question": reply.question[0].name.to_text(),
        "answer": rrsets(reply.answer, exact=True),
    }
    if not reply.answer:
        seen["authority"] = rrsets(reply.authority, exact=False)
    return seen


@pytest.mark.parametrize("kind", REFERENCES)
async def test_same_answers_as_a_reference_server_in_any_case(
    zone: Zone, admin: Actor, kind: str, database_url: str
) -> None:
    if "postgresql" in database_url:
        pytest.skip("the zone is the same whatever the database; once is enough")
    await seed(zone, admin)
    text = await zone.service.zone_text(IDENTIFIERS.values())
    rng = random.Random(SEED)
    compared = 0
    with ReferenceServer(ZONE, text, kind=kind) as reference:
        for qname, rdtype in await questions(zone):
            for spelt in spellings(qname, rng)[-2:]:
                query = dns.message.make_query(spelt, rdtype, use_edns=0, payload=1232)
                query.flags &= ~dns.flags.RD
                ours, theirs = await asyncio.gather(
                    zone.send(query),
                    dns.asyncquery.udp(query, reference.host, port=reference.port, timeout=TIMEOUT),
                )
                assert _seen(ours) == _seen(theirs), (spelt, rdtype)
                compared += 1
    assert compared == 2 * (len(IDENTIFIERS) * len(IDENTIFIER_TYPES) + len(OTHER_NAMES))
