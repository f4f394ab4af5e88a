"""Answering DNS queries for the zone, independent of UDP or TCP.

Two tiers. The fast path is a dictionary hit: an answer is cached as wire
bytes keyed by the query after its id (so the question's letter case, flags
and EDNS options are all part of the key) and only the id is patched in.
Everything else is parsed with dnspython, answered from the engine, and
cached on the way out. Positive answers live in the engine's answer cache
under the identifier's key, so the registry's change feed evicts them like
every other front end's; negative ones (NXDOMAIN, REFUSED) in a small cache
of their own, dropped on any change, so that a flood of made-up names cannot
push real answers out.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from registry.errors import InvalidName
from registry.grammar import HandleName
from registry.services.base import ChangeEvent

from ..engine import Engine, Resolution, Status
from . import records
from .names import Apex, Branch, Hashed, Named, NotAnIdentifier, ZoneNames

log = logging.getLogger("idnode.dns")

OUR_PAYLOAD = 1232
"""The EDNS payload size we accept and offer (DNS flag day 2020)."""
PLAIN_PAYLOAD = 512
NEGATIVE_TTL = 5
MAX_SHAPES = 100_000
MAX_NEGATIVE = 10_000
APEX_KEY = "dns:apex"
"""Answers at the apex and its nameserver: the SOA serial moves with every change."""
TREE_KEY = "dns:tree"
"""Answers for branches of the zone (prefixes, OID arcs): they follow every change."""
_ZONE_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


@dataclass(frozen=True, slots=True)
class _Answer:
    message: dns.message.Message
    key: str | None
    """Cache under this name key for ``ttl``; ``None``: the negative cache."""
    ttl: float = 0.0


class DnsService:
    def __init__(
        self, engine: Engine, names: ZoneNames, *, ns_address: str, serial: int = 0
    ) -> None:
        self.engine = engine
        self.names = names
        self.ns_address = ns_address
        self.serial = serial
        self._shapes: dict[bytes, str] = {}
        """Query shape → the name key its answer is cached under."""
        self._negative: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        engine.followers.append(self.on_changes)

    async def start(self) -> None:
        self.serial = await self.engine.last_change()

    def on_changes(self, events: Sequence[ChangeEvent]) -> None:
        if events:
            self.serial = max(self.serial, *(event.seq for event in events))
        self.engine.cache.invalidate(APEX_KEY)
        self.engine.cache.invalidate(TREE_KEY)
        self._negative.clear()

    # --- the two tiers ---------------------------------------------------------------

    def fast(self, data: bytes, *, udp: bool) -> bytes | None:
        """The cached answer to this query with its id patched in; None on a miss."""
        shape = (b"U" if udp else b"T") + data[2:]
        key = self._shapes.get(shape)
        if key is not None:
            payload = self.engine.cache.get(key, shape)
            if payload is not None:
                return data[:2] + payload  # type: ignore[no-any-return]
        negative = self._negative.get(shape)
        if negative is not None and negative[1] > time.monotonic():
            return data[:2] + negative[0]
        return None

    async def handle(self, data: bytes, *, udp: bool) -> bytes | None:
        """Answer one query (None: no answer at all — a response, or a runt)."""
        if len(data) < 12 or data[2] & 0x80:
            return None  # shorter than a header, or a response: never answer those
        try:
            query = dns.message.from_wire(data, keyring=False)
        except dns.message.ShortHeader:
            return None
        except Exception:  # every way a message can be malformed
            return formerr(data)
        epoch = self.engine.cache.epoch  # before anything is read
        try:
            answer = await self._answer(query)
        except Exception:  # the store is unreachable, or a bug: say so, cache nothing
            log.exception("cannot answer a DNS query for %s", query.question)
            failure = self._response(query, dns.rcode.SERVFAIL, aa=False)
            return self._wire(query, failure, udp)
        wire = self._wire(query, answer.message, udp)
        if answer.message.flags & dns.flags.TC or answer.message.rcode() in (
            dns.rcode.FORMERR,
            dns.rcode.NOTIMP,
            dns.rcode.BADVERS,
        ):
            return wire  # about this query's bytes only: not worth a cache entry
        shape = (b"U" if udp else b"T") + data[2:]
        if answer.key is None:
            if self.engine.cache.epoch == epoch:  # no change landed while we looked
                self._remember_negative(shape, wire[2:])
        elif answer.ttl > 0:
            if len(self._shapes) >= MAX_SHAPES:
                self._shapes.clear()
            self._shapes[shape] = answer.key
            self.engine.cache.put(answer.key, shape, wire[2:], answer.ttl, epoch=epoch)
        return wire

    def _remember_negative(self, shape: bytes, payload: bytes) -> None:
        if len(self._negative) >= MAX_NEGATIVE:
            self._negative.popitem(last=False)
        self._negative[shape] = (payload, time.monotonic() + NEGATIVE_TTL)

    async def zone_text(self, identifiers: Iterable[str]) -> str:
        """These identifiers' records and the apex in master-file format: the
        same data for another server (a reference to compare answers with)."""
        zone = self.names.zone
        apex = [records.soa(zone, self.serial), records.ns(zone)]
        apex.append(records.address(records.nameserver(zone), self.ns_address))
        lines = [f"$ORIGIN {zone.to_text()}"] + [rrset.to_text() for rrset in apex]
        for text in identifiers:
            name = self.engine.parse(text)
            resolution = await self.engine.resolve(name)
            if resolution.status is not Status.FOUND:
                raise ValueError(f"{text} does not resolve here: {resolution.status.name}")
            owner = self.names.of_identifier(name)
            found = records.identifier_rrsets(
                owner, name.text, resolution.values, int(resolution.ttl()), oid=name.oid
            )
            lines += [rrset.to_text() for rrset in found.values()]
        return "\n".join(lines) + "\n"

    # --- deciding the answer ---------------------------------------------------------

    async def _answer(self, query: dns.message.Message) -> _Answer:
        if query.opcode() != dns.opcode.QUERY:
            return _Answer(self._response(query, dns.rcode.NOTIMP, aa=False), None)
        if len(query.question) != 1:
            return _Answer(self._response(query, dns.rcode.FORMERR, aa=False), None)
        if query.edns > 0:
            return _Answer(self._response(query, dns.rcode.BADVERS, aa=False), None)
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        if (
            query.had_tsig
            or question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY)
            or not qname.is_subdomain(self.names.zone)
            or qtype in _ZONE_TRANSFERS
        ):
            return _Answer(self._response(query, dns.rcode.REFUSED, aa=False), None)
        if qname == records.nameserver(self.names.zone):
            found = {dns.rdatatype.A: records.address(qname, self.ns_address)}
            if ":" in self.ns_address:
                found = {dns.rdatatype.AAAA: records.address(qname, self.ns_address)}
            return self._rrsets(query, found, APEX_KEY, 3600)
        try:
            target = self.names.target(qname)
        except NotAnIdentifier:
            return self._nxdomain(query)
        if isinstance(target, Apex):
            apex = {
                dns.rdatatype.SOA: records.soa(self.names.zone, self.serial),
                dns.rdatatype.NS: records.ns(self.names.zone),
            }
            return self._rrsets(query, apex, APEX_KEY, 3600)
        if isinstance(target, Branch):
            exists = (
                self._above_node_arc(target.arcs)
                if target.oid
                else await self.engine.prefix_tree_has(target.prefix)
            )
            return self._rrsets(query, {}, TREE_KEY, 3600) if exists else self._nxdomain(query)
        text = target.text if isinstance(target, Named) else None
        if isinstance(target, Hashed):
            text = await self.engine.name_by_suffix_digest(target.prefix, target.digest)
        if text is None:
            return self._nxdomain(query)
        try:
            name = self.engine.parse(text)
        except InvalidName:
            return self._nxdomain(query)
        if name.oid and self._above_node_arc(tuple(int(arc) for arc in name.text.split("."))):
            return self._rrsets(query, {}, TREE_KEY, 3600)
        return await self._identifier(query, name)

    def _above_node_arc(self, arcs: tuple[int, ...]) -> bool:
        """Whether these arcs lead to the node's OID arc (branches of the OID tree)."""
        node_arc = self.engine.registry.services.grammar.oid_arc
        if node_arc is None:
            return False
        node = tuple(int(arc) for arc in node_arc.split("."))
        return len(arcs) < len(node) and node[: len(arcs)] == arcs

    async def _identifier(self, query: dns.message.Message, name: HandleName) -> _Answer:
        resolution: Resolution = await self.engine.resolve(name)
        if resolution.status is Status.FOUND:
            qname = query.question[0].name
            ttl = int(resolution.ttl())
            found = records.identifier_rrsets(
                qname, name.text, resolution.values, ttl, oid=name.oid
            )
            return self._rrsets(query, found, name.key, resolution.ttl())
        if resolution.status in (Status.VALUES_NOT_FOUND, Status.REFERRAL):
            # The name exists (here, or at the enterprise's own node): no data here.
            return self._rrsets(query, {}, name.key, float(NEGATIVE_TTL))
        if (
            resolution.status is Status.NOT_FOUND
            and name.oid
            and await self.engine.has_names_below(name.key)
        ):
            return self._rrsets(query, {}, TREE_KEY, float(NEGATIVE_TTL))
        return self._nxdomain(query)

    # --- building responses ------------------------------------------------------------

    def _response(
        self, query: dns.message.Message, rcode: dns.rcode.Rcode, *, aa: bool = True
    ) -> dns.message.Message:
        response = dns.message.make_response(query, our_payload=OUR_PAYLOAD, pad=0)
        response.flags |= query.flags & dns.flags.CD
        if aa:
            response.flags |= dns.flags.AA
        response.set_rcode(rcode)
        if query.edns >= 0 and query.ednsflags & dns.flags.DO:
            response.want_dnssec(True)  # RFC 3225: the DO bit is copied back
        return response

    def _rrsets(
        self,
        query: dns.message.Message,
        found: dict[dns.rdatatype.RdataType, dns.rrset.RRset],
        key: str,
        ttl: float,
    ) -> _Answer:
        """The answer at an existing name: the type asked for, or NODATA."""
        response = self._response(query, dns.rcode.NOERROR)
        qtype = query.question[0].rdtype
        if qtype == dns.rdatatype.ANY:
            response.answer.append(records.minimal_any(query.question[0].name))
        elif qtype in found:
            response.answer.append(found[qtype])
            if qtype == dns.rdatatype.NS:
                glue = records.nameserver(self.names.zone)
                response.additional.append(records.address(glue, self.ns_address))
        else:
            response.authority.append(self._negative_soa())
        return _Answer(response, key, ttl)

    def _nxdomain(self, query: dns.message.Message) -> _Answer:
        response = self._response(query, dns.rcode.NXDOMAIN)
        response.authority.append(self._negative_soa())
        return _Answer(response, None)

    def _negative_soa(self) -> dns.rrset.RRset:
        """The SOA that goes with a negative answer: TTL min(SOA TTL, minimum) (RFC 2308)."""
        return records.soa(self.names.zone, self.serial, ttl=NEGATIVE_TTL)

    def _wire(self, query: dns.message.Message, response: dns.message.Message, udp: bool) -> bytes:
        """Encoded within the size the transport allows; TC and no records if too big."""
        if not udp:
            limit = 65535
        elif query.edns >= 0:
            limit = min(max(query.payload, PLAIN_PAYLOAD), OUR_PAYLOAD)
        else:
            limit = PLAIN_PAYLOAD
        try:
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            truncated = self._response(
                query, response.rcode(), aa=bool(response.flags & dns.flags.AA)
            )
            truncated.flags |= dns.flags.TC
            return truncated.to_wire(max_size=limit, want_shuffle=False)


def formerr(data: bytes) -> bytes:
    """FORMERR for a query that does not parse: its id and opcode, nothing else
    (so never larger than what was sent)."""
    flags = 0x8000 | (data[2] & 0x78) << 8 | dns.rcode.FORMERR
    return data[:2] + flags.to_bytes(2, "big") + bytes(8)


def truncated(answer: bytes) -> bytes:
    """The same answer cut to its header and question, TC set: what a rate-limited
    client gets instead (RRL's slip), never larger than the query was."""
    end = 12
    if int.from_bytes(answer[4:6], "big"):
        while end < len(answer) and answer[end]:
            end += 1 + answer[end]
        end += 5  # the root label, QTYPE and QCLASS
    if end > len(answer):
        return answer[:2] + bytes([answer[2] | 0x02, answer[3]]) + bytes(8)
    counts = (1 if end > 12 else 0).to_bytes(2, "big") + bytes(6)
    return answer[:2] + bytes([answer[2] | 0x02, answer[3]]) + counts + answer[12:end]
