"""What an identifier's public values look like as DNS records (pure).

* NAPTR, DDDS style, one per URL-like value, in index order: terminal rule
  (flag ``U``), the URI in the regexp, replacement ``.``. Service ``HDL+URL``
  for handles, ``UINF`` (the ORS URI service) for OIDs.
* URI (RFC 7553), one per URL-like value: priority by index order, weight 1.
* TXT: one record with the canonical name (``hdl=`` or ``oid=``), then one per
  value: ``idx=<index>``, ``type=<type>``, then its data — ``data=`` and UTF-8
  text, or ``b64=`` and base64 for bytes that are no text — cut into strings of
  at most 255 octets; the data is the concatenation of those strings.

Handle-system internals (``HS_*`` values: keys, admin lists, sites) are not
published in the zone. So that every answer fits a DNS message (64 KiB, TCP),
values over :data:`MAX_TXT_DATA` bytes, and values past :data:`MAX_TXT_BYTES`
of TXT in all, are listed with their size only (``size=<n>``); past that
budget values are left out and a last TXT record says how many
(``omitted=<n>``). URIs longer than :data:`MAX_URI` or past
:data:`MAX_URI_BYTES` in all get no NAPTR or URI record.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.HINFO
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.ANY.URI
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.NAPTR
import dns.rrset

from registry.models import HandleValue

IN = dns.rdataclass.IN
MAX_TXT_DATA = 4096
MAX_TXT_BYTES = 32 * 1024
MAX_URI = 2048
MAX_URI_BYTES = 16 * 1024
MAX_TTL = 86_400
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_DELIMITERS = "!#|%~"


def published(values: Iterable[HandleValue]) -> list[HandleValue]:
    """The values the zone shows: not the Handle system's own, in index order."""
    return sorted(
        (v for v in values if not v.type.upper().startswith("HS_")), key=lambda v: v.index
    )


def url_of(value: HandleValue) -> str | None:
    """The URI a value carries, if it is one (``URL`` types, or data that looks it)."""
    try:
        text = value.data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not _URL_LIKE.fullmatch(text):
        return None
    return text


def _regexp(uri: str) -> bytes | None:
    """``!^.*$!<uri>!`` with a delimiter the URI does not contain (RFC 3402 §3.2)."""
    for delimiter in _DELIMITERS:
        if delimiter not in uri:
            escaped = uri.replace("\\", "\\\\")
            return f"{delimiter}^.*${delimiter}{escaped}{delimiter}".encode()
    return None


def _strings(prefix: str, data: bytes) -> list[bytes]:
    whole = prefix.encode() + data
    return [whole[i : i + 255] for i in range(0, len(whole), 255)] or [b""]


def _value_strings(value: HandleValue, room: int) -> list[bytes]:
    head = [f"idx={value.index}".encode(), b"type=" + value.type.encode("utf-8")[:250]]
    if len(value.data) > min(MAX_TXT_DATA, room):
        return [*head, f"size={len(value.data)}".encode()]
    try:
        text = value.data.decode("utf-8")
        if text.isprintable():
            return head + _strings("data=", value.data)
    except UnicodeDecodeError:
        pass
    return head + _strings("b64=", base64.b64encode(value.data))


def identifier_rrsets(
    owner: dns.name.Name,
    canonical: str,
    values: Sequence[HandleValue],
    ttl: int,
    *,
    oid: bool = False,
) -> dict[dns.rdatatype.RdataType, dns.rrset.RRset]:
    """NAPTR, URI and TXT RRsets of one identifier, by type (empty sets left out)."""
    ttl = max(0, min(ttl, MAX_TTL))
    shown = published(values)
    service = b"UINF" if oid else b"HDL+URL"
    naptr = dns.rrset.RRset(owner, IN, dns.rdatatype.NAPTR)
    uri = dns.rrset.RRset(owner, IN, dns.rdatatype.URI)
    rank = uri_bytes = 0
    for value in shown:
        url = url_of(value)
        regexp = _regexp(url) if url and len(url) <= MAX_URI else None
        if url is None or regexp is None or uri_bytes + len(url) > MAX_URI_BYTES:
            continue
        rank += 1
        uri_bytes += len(url)
        naptr.add(
            dns.rdtypes.IN.NAPTR.NAPTR(
                IN, dns.rdatatype.NAPTR, 100, 10 * rank, b"U", service, regexp, dns.name.root
            ),
            ttl,
        )
        uri.add(dns.rdtypes.ANY.URI.URI(IN, dns.rdatatype.URI, rank, 1, url.encode()), ttl)
    txt = dns.rrset.RRset(owner, IN, dns.rdatatype.TXT)
    strings = [_strings("oid=" if oid else "hdl=", canonical.encode())]
    room = MAX_TXT_BYTES - len(canonical)
    for at, value in enumerate(shown):
        each = _value_strings(value, room - 300)  # 300: room for the record's head
        cost = sum(len(x) + 1 for x in each) + 12
        if cost > room:
            strings.append([f"omitted={len(shown) - at}".encode()])
            break
        strings.append(each)
        room -= cost
    for each in strings:
        txt.add(dns.rdtypes.ANY.TXT.TXT(IN, dns.rdatatype.TXT, each), ttl)
    return {rrset.rdtype: rrset for rrset in (naptr, uri, txt) if rrset}


def soa(
    zone: dns.name.Name, serial: int, *, ttl: int = 3600, negative_ttl: int = 5
) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(zone, IN, dns.rdatatype.SOA)
    rdata = dns.rdtypes.ANY.SOA.SOA(
        IN,
        dns.rdatatype.SOA,
        nameserver(zone),
        dns.name.Name((b"hostmaster", *zone.labels)),
        serial & 0xFFFFFFFF,
        3600,
        600,
        604_800,
        negative_ttl,
    )
    rrset.add(rdata, ttl)
    return rrset


def nameserver(zone: dns.name.Name) -> dns.name.Name:
    return dns.name.Name((b"ns1", *zone.labels))


def ns(zone: dns.name.Name, *, ttl: int = 3600) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(zone, IN, dns.rdatatype.NS)
    rrset.add(dns.rdtypes.ANY.NS.NS(IN, dns.rdatatype.NS, nameserver(zone)), ttl)
    return rrset


def address(owner: dns.name.Name, ip: str, *, ttl: int = 3600) -> dns.rrset.RRset:
    if ":" in ip:
        rrset = dns.rrset.RRset(owner, IN, dns.rdatatype.AAAA)
        rrset.add(dns.rdtypes.IN.AAAA.AAAA(IN, dns.rdatatype.AAAA, ip), ttl)
    else:
        rrset = dns.rrset.RRset(owner, IN, dns.rdatatype.A)
        rrset.add(dns.rdtypes.IN.A.A(IN, dns.rdatatype.A, ip), ttl)
    return rrset


def minimal_any(owner: dns.name.Name, *, ttl: int = 3600) -> dns.rrset.RRset:
    """RFC 8482 §4.2: one synthesized HINFO instead of everything."""
    rrset = dns.rrset.RRset(owner, IN, dns.rdatatype.HINFO)
    rrset.add(dns.rdtypes.ANY.HINFO.HINFO(IN, dns.rdatatype.HINFO, b"RFC8482", b""), ttl)
    return rrset
