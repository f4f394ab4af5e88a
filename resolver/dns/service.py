"""Answering DNS queries for the zone, independent of UDP or TCP.

Two tiers. The fast path is a dictionary hit: an answer is cached as wire
bytes keyed by the query after its id (so the question's letter case, flags
and EDNS options are all part of the key) and only the id is patched in.
Everything else is parsed with dnspython, answered from the resolver, and
cached on the way out. Positive answers are cached under the identifier's
key, so the registry's change feed evicts them as it evicts every other front
end's; answers that carry the SOA (NXDOMAIN, NODATA) and refusals live in a
small cache of their own, dropped on any change (the SOA serial moves with
every change), so that a flood of made-up names cannot push real answers
out. Only small queries are cached: the key is the query itself.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from metrics.tally import NO_PREFIX, TALLY
from registry.dnsnames import Apex, Branch, Hashed, Named, NotAnIdentifier, ZoneNames
from registry.errors import InvalidName, StorageUnavailable
from registry.grammar import HandleName
from registry.services.base import ChangeEvent

from ..cache import AnswerCache
from ..guard import GuardStage, Label, Wording
from ..limits import Guard, Refusal
from ..resolution import Resolution, Resolver, Status
from . import records

log = logging.getLogger("idnode.dns")

OUR_PAYLOAD = 1232
"""The EDNS payload size we accept and offer (DNS flag day 2020)."""
PLAIN_PAYLOAD = 512
NEGATIVE_TTL = 5
MAX_CACHED_QUERY = 300
"""Longer queries (big EDNS options) are answered but not cached: the query is the key."""
MAX_CACHED_ANSWER = 4096
MAX_NEGATIVE = 10_000
APEX_KEY = "dns:apex"
"""Answers at the apex and its nameserver: the SOA serial moves with every change."""
TREE_KEY = "dns:tree"
"""Answers for branches of the zone (prefixes, OID arcs): they follow every change."""
_ZONE_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
_META_TYPES = (dns.rdatatype.NONE, dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY)
"""Types that only live in messages, never in a zone (RFC 6895 §3.1): FORMERR."""
_MAIL_TYPES = (dns.rdatatype.MAILA, dns.rdatatype.MAILB)
_RESOLUTION = "resolution"
_UNCACHED = (dns.rcode.FORMERR, dns.rcode.NOTIMP, dns.rcode.BADVERS, dns.rcode.SERVFAIL)


@dataclass(frozen=True, slots=True)
class _Answer:
    message: dns.message.Message
    key: str | None
    """Cache under this name key for ``ttl``; ``None``: the negative cache."""
    ttl: float = 0.0
    prefix: str = NO_PREFIX
    """The enterprise whose identifier this answers, for the daily count."""


def outcome_of(response: dns.message.Message) -> str:
    rcode = response.rcode()
    if rcode == dns.rcode.NOERROR:
        return "found" if response.answer else "not_found"  # NODATA: nothing of that type
    if rcode == dns.rcode.NXDOMAIN:
        return "not_found"
    if rcode == dns.rcode.REFUSED:
        return "refused"
    return "error"


class DnsService:
    def __init__(
        self,
        resolver: Resolver,
        names: ZoneNames,
        *,
        ns_address: str,
        serial: int = 0,
        cache_entries: int = 100_000,
        amplification: int = 0,
        guard: Guard | None = None,
    ) -> None:
        self.resolver = resolver
        self.stage = GuardStage(WORDING, guard, amplification)
        """Per-client limits (``guard``; None: none; the listeners ask it first,
        :func:`refused` beyond them), answers over UDP at most ``amplification``
        times their query (else truncated, TC, and the client asks over TCP; 0: any
        size), and the tally."""
        self.names = names
        self.ns_address = ns_address
        self.serial = serial
        self.cache = AnswerCache(max_entries=cache_entries)
        self._shapes: dict[bytes, str] = {}
        """Query shape → the name key its answer is cached under."""
        self._negative: OrderedDict[bytes, tuple[bytes, float, Label]] = OrderedDict()
        TALLY.watch("dns", self.cache)
        resolver.followers.append(self.on_changes)

    async def start(self) -> None:
        self.serial = await self.resolver.last_change()

    def on_changes(self, events: Sequence[ChangeEvent]) -> None:
        if events:
            self.serial = max(self.serial, *(event.seq for event in events))
        stale = self.resolver.stale(events)
        if stale is None:
            self.cache.clear()
            self._shapes.clear()
        else:
            for key in (*stale, APEX_KEY, TREE_KEY):
                self.cache.invalidate(key)
        self._negative.clear()

    # --- the two tiers ---------------------------------------------------------------

    def fast(self, data: bytes, *, udp: bool) -> bytes | None:
        """The cached answer to this query, its id and the question's letter case
        patched in; None on a miss."""
        started = time.perf_counter()
        found = _shape(data, udp)
        if found is None:
            return None
        shape, end = found
        key = self._shapes.get(shape)
        cached: tuple[bytes, Label] | None = None
        if key is not None:
            cached = self.cache.get(key, shape)
        if cached is None:
            negative = self._negative.get(shape)
            if negative is None or negative[1] <= time.monotonic():
                return None
            cached = negative[0], negative[2]
        payload, label = cached
        # The answer's names point into its question (compression), so the
        # client's spelling of the question is all there is to patch.
        answer = data[:2] + payload[:10] + data[12:end] + payload[end - 2 :]
        return self.stage.deliver(data, answer, udp, label, started)

    async def handle(self, data: bytes, *, udp: bool) -> bytes | None:
        """Answer one query (None: no answer at all — a response, or a runt)."""
        started = time.perf_counter()
        if len(data) < 12 or data[2] & 0x80:
            return None  # shorter than a header, or a response: never answer those
        try:
            query = dns.message.from_wire(data, keyring=False)
        except dns.message.ShortHeader:
            return None
        except Exception:  # every way a message can be malformed
            TALLY.count("dns", "error", NO_PREFIX, time.perf_counter() - started)
            return formerr(data)
        protocol = "dns"
        if len(query.question) == 1 and query.question[0].name.is_subdomain(self.names.oid_subtree):
            protocol = "oid"
        epoch = self.cache.epoch  # before anything is read
        try:
            answer = await self._answer(query)
        except Exception as exc:  # the store is unreachable, or a bug: say so, cache nothing
            if isinstance(exc, StorageUnavailable):  # an outage: one line, not a stack trace
                log.error("storage unavailable for a DNS query for %s: %s", query.question, exc)
            else:
                log.exception("cannot answer a DNS query for %s", query.question)
            failure = self._response(query, dns.rcode.SERVFAIL, aa=False)
            TALLY.count(protocol, "error", NO_PREFIX, time.perf_counter() - started)
            return self._wire(query, failure, udp)
        wire = self._wire(query, answer.message, udp)
        label = (protocol, outcome_of(answer.message), answer.prefix)
        sent = self.stage.deliver(data, wire, udp, label, started)
        found = _shape(data, udp)
        if (
            found is None
            or answer.message.rcode() in _UNCACHED
            or len(wire) > MAX_CACHED_ANSWER
            or wire[12 : found[1]] != data[12 : found[1]]  # not our question echoed
            or self.cache.epoch != epoch  # a change landed while we looked
        ):
            return sent
        shape = found[0]
        if answer.key is None:
            now = time.monotonic()
            # One lifetime for all: the oldest expire first, and go as they do.
            while self._negative and (
                len(self._negative) >= MAX_NEGATIVE or next(iter(self._negative.values()))[1] <= now
            ):
                self._negative.popitem(last=False)
            self._negative.pop(shape, None)
            self._negative[shape] = (wire[2:], now + NEGATIVE_TTL, label)
        elif answer.ttl > 0:
            if len(self._shapes) >= self.cache.max_entries:
                self._shapes.clear()  # stale mappings only cost a miss
            self._shapes[shape] = answer.key
            self.cache.put(answer.key, shape, (wire[2:], label), answer.ttl, epoch=epoch)
        return sent

    async def zone_text(self, identifiers: Iterable[str]) -> str:
        """These identifiers' records and the apex in master-file format: the
        same data for another server (a reference to compare answers with)."""
        zone = self.names.zone
        apex = [records.soa(zone, self.serial), records.ns(zone)]
        apex.append(records.address(records.nameserver(zone), self.ns_address))
        lines = [f"$ORIGIN {zone.to_text()}"] + [rrset.to_text() for rrset in apex]
        for text in identifiers:
            name = self.resolver.parse(text)
            resolution = await self.resolver.resolve(name)
            if resolution.status is not Status.FOUND:
                raise ValueError(f"{text} does not resolve here: {resolution.status.name}")
            owner = self.names.of_identifier(name)
            found = records.identifier_rrsets(
                owner, name.key, resolution.values, int(resolution.ttl()), oid=name.oid
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
        if qtype in _META_TYPES:
            return _Answer(self._response(query, dns.rcode.FORMERR, aa=False), None)
        if qtype in _MAIL_TYPES:
            return _Answer(self._response(query, dns.rcode.NOTIMP, aa=False), None)
        if (
            query.had_tsig
            or question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY)
            or not qname.is_subdomain(self.names.zone)
            or qtype in _ZONE_TRANSFERS
        ):
            return _Answer(self._response(query, dns.rcode.REFUSED, aa=False), None)
        if qname == records.nameserver(self.names.zone):
            glue = records.address(qname, self.ns_address)
            return self._rrsets(query, {glue.rdtype: glue}, APEX_KEY, 3600)
        try:
            target = self.names.target(qname)
        except NotAnIdentifier:
            return await self._nothing_at(query)
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
                else await self.resolver.prefix_tree_has(target.prefix)
            )
            return self._rrsets(query, {}, TREE_KEY, 3600) if exists else self._nxdomain(query)
        text = target.text if isinstance(target, Named) else None
        if isinstance(target, Hashed):
            found = await self.resolver.names_at_dns_path(self.names.path(qname))
            text = found[0] if len(found) == 1 else None
        name = self._named_here(text, qname)
        if name is None:
            return await self._nothing_at(query)
        if name.oid and self._above_node_arc(tuple(int(arc) for arc in name.text.split("."))):
            return self._rrsets(query, {}, TREE_KEY, 3600)
        return await self._identifier(query, name)

    def _named_here(self, text: str | None, qname: dns.name.Name) -> HandleName | None:
        """The identifier ``text`` if ``qname`` is its one DNS name (not merely a
        spelling that decodes to it, as an OID's arcs under a handle's do)."""
        if text is None:
            return None
        try:
            name = self.resolver.parse(text)
            return name if self.names.of_identifier(name) == qname else None
        except (InvalidName, NotAnIdentifier):
            return None

    def _above_node_arc(self, arcs: tuple[int, ...]) -> bool:
        """Whether these arcs lead to the node's OID arc (branches of the OID tree)."""
        node_arc = self.resolver.grammar.oid_arc
        if node_arc is None:
            return False
        node = tuple(int(arc) for arc in node_arc.split("."))
        return len(arcs) < len(node) and node[: len(arcs)] == arcs

    async def _identifier(self, query: dns.message.Message, name: HandleName) -> _Answer:
        resolution = await self._resolve(name)
        if resolution.status is Status.FOUND:
            qname = query.question[0].name
            ttl = int(resolution.ttl())
            found = records.identifier_rrsets(qname, name.key, resolution.values, ttl, oid=name.oid)
            answer = self._rrsets(query, found, name.key, resolution.ttl())
        elif resolution.status in (Status.VALUES_NOT_FOUND, Status.REFERRAL):
            # The name exists (here, or at the enterprise's own node): no data here.
            answer = self._rrsets(query, {}, name.key, float(NEGATIVE_TTL))
        else:
            return await self._nothing_at(query)
        return replace(answer, prefix=resolution.account_prefix)

    async def _resolve(self, name: HandleName) -> Resolution:
        """The resolver's resolution, kept beside the wire answers it makes: a query
        spelt another way (EDNS, flags) is then built without the store."""
        cached: Resolution | None = self.cache.get(name.key, _RESOLUTION)
        if cached is not None:
            return cached
        epoch = self.cache.epoch
        resolution = await self.resolver.resolve(name)
        self.cache.put(name.key, _RESOLUTION, resolution, resolution.ttl(), epoch=epoch)
        return resolution

    async def _nothing_at(self, query: dns.message.Message) -> _Answer:
        """No identifier has this name: NODATA if some have names below it (an
        empty non-terminal, RFC 8020), else NXDOMAIN."""
        qname = query.question[0].name
        if await self.resolver.has_dns_path_below(self.names.path(qname)):
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
        """The answer at an existing name: the type asked for, or NODATA (cached
        with the negative answers: it carries the SOA)."""
        response = self._response(query, dns.rcode.NOERROR)
        qtype = query.question[0].rdtype
        if qtype == dns.rdatatype.ANY and found:
            response.answer.append(records.minimal_any(query.question[0].name))
        elif qtype in found:
            response.answer.append(found[qtype])
            if qtype == dns.rdatatype.NS:
                glue = records.nameserver(self.names.zone)
                response.additional.append(records.address(glue, self.ns_address))
        else:
            response.authority.append(self._negative_soa())
            return _Answer(response, None)
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


def _shape(data: bytes, udp: bool) -> tuple[bytes, int] | None:
    """The cache key of a query — everything after the id, the question's name in
    lowercase — and where that name ends; None for queries not worth caching
    (long ones, or a question without exactly one plain, uncompressed name)."""
    if len(data) > MAX_CACHED_QUERY or data[4:6] != b"\x00\x01":
        return None
    end = 12
    size = len(data)
    while end < size:
        length = data[end]
        if length == 0:
            end += 1
            break
        if length > 63:
            return None  # a compression pointer: no shape of ours
        end += 1 + length
    else:
        return None
    if end + 4 > size:
        return None
    return (b"U" if udp else b"T") + data[2:12] + data[12:end].lower() + data[end:], end


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


def refused(data: bytes, refusal: Refusal, udp: bool) -> bytes:
    """REFUSED to a query from a client over its limits: its header and question
    only, so never larger than the query; empty (no answer) for no query."""
    try:
        query = dns.message.from_wire(data, question_only=True)
    except dns.exception.DNSException:
        return b""
    if query.flags & dns.flags.QR:
        return b""  # a response: nothing was asked
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.REFUSED)
    return response.to_wire()


def _truncated_instead(query: bytes, answer: bytes) -> bytes:
    """Not an answer yet: the client asks over TCP."""
    return truncated(answer)


WORDING = Wording("dns", "dns", refused, _truncated_instead, len)
"""DNS's words for the guard stage."""
