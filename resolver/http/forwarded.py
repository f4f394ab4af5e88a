"""The real client behind a reverse proxy: ``Forwarded`` (RFC 7239) and
``X-Forwarded-For`` / ``X-Forwarded-Proto``, believed only from ``trusted_proxies``.

The first middleware of the HTTP app replaces the request with a clone whose
``remote`` is the client and whose ``scheme`` is the one the client used, so
the rate limits, the traffic table, the login lockout, the credentials-over-HTTPS
rule and the access log all see the client without knowing about proxies.

aiohttp-remotes does not fit: its strict middlewares refuse a peer that is not
the configured proxy chain (a node also takes direct clients) and answer a bad
address with an error, and its relaxed ones believe the headers from anyone.

How the client is found (nginx's ``real_ip_recursive``): the addresses the
header lists, with the TCP peer after them, are walked from the right; while
the current address is a trusted proxy the one before it is taken, and the
first untrusted one is the client (the leftmost, if all are trusted). An entry
that is no address stops the walk at the last good hop. An ``unknown`` or
obfuscated (``_name``) identifier is never a trusted proxy, so it is the client:
clients a proxy cannot name are limited under that name, never exempt as the
proxy's own address would be.

Which header: when a request carries both, ``X-Forwarded-For`` (with
``X-Forwarded-Proto``) is used and ``Forwarded`` ignored, the two never mixed.
nginx and most proxies append to ``X-Forwarded-For`` but pass a client's
``Forwarded`` through untouched, so preferring ``Forwarded`` would let any
client behind them name itself; a proxy that writes only ``Forwarded`` must
drop a client's ``X-Forwarded-For``.

The scheme: ``proto`` of the ``Forwarded`` element that names the client (when
the peer itself is the client, the element it wrote last); for
``X-Forwarded-Proto``, its rightmost value, the one the trusted peer wrote.
Only ``http`` and ``https`` count; anything else leaves the connection's scheme.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDictProxy

Hop = IPv4Address | IPv6Address | str
"""An address, or an identifier that names no address (``unknown``, ``_obfuscated``)."""

SCHEMES = frozenset({"http", "https"})
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PAIR = re.compile(rf"[ \t]*({_TCHARS})=({_TCHARS}|{_QUOTED})[ \t]*", re.S)
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")


# --- parsing (pure) -------------------------------------------------------------------


def parse_node(text: str) -> Hop | None:
    """One hop as a header names it — ``192.0.2.1``, ``192.0.2.1:80``,
    ``[2001:db8::1]``, ``[2001:db8::1]:4711``, a bare IPv6 address (as
    ``X-Forwarded-For`` writes it), ``unknown`` or ``_obfuscated``, each with an
    optional (possibly obfuscated) port — or None when it is none of these."""
    text = text.strip()
    if text.startswith("["):
        inside, sep, port = text[1:].partition("]")
        if not sep or (port and not (port[0] == ":" and _good_port(port[1:]))):
            return None
        try:
            return IPv6Address(inside)
        except ValueError:
            return None
    try:
        return ipaddress.ip_address(text)  # IPv4, or IPv6 written bare
    except ValueError:
        pass
    name, sep, port = text.partition(":")
    if sep and not _good_port(port):
        return None
    if name.lower() == "unknown":
        return "unknown"
    if _OBFUSCATED.fullmatch(name):
        return name
    try:
        return IPv4Address(name)
    except ValueError:
        return None


def _good_port(port: str) -> bool:
    return bool(_PORT.fullmatch(port)) and (port[0] == "_" or int(port) <= 65535)


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
    return value


def forwarded_elements(values: Iterable[str]) -> list[dict[str, str] | None]:
    """The elements of ``Forwarded`` header lines, left to right, each its
    parameters (names lower-cased, values unquoted) or None when malformed
    (bad syntax, a parameter twice); empty elements are skipped.

    A comma or semicolon always separates, even inside quotes: no value a node
    reads (an address, a scheme) holds one, and so a client cannot open a quoted
    string that swallows the element its proxy appends after its own."""
    elements: list[dict[str, str] | None] = []
    for value in values:
        for text in value.split(","):
            if not text.strip():
                continue
            element: dict[str, str] | None = {}
            for pair in text.split(";"):
                if not pair.strip():
                    continue
                match = _PAIR.fullmatch(pair)
                name = match.group(1).lower() if match else ""
                if match is None or element is None or name in element:
                    element = None
                    break
                element[name] = _unquote(match.group(2))
            elements.append(element)
    return elements


def forwarded_for(values: Iterable[str]) -> list[str]:
    """The entries of ``X-Forwarded-For`` (or ``X-Forwarded-Proto``) header
    lines, left to right; empty entries are skipped."""
    return [entry.strip() for value in values for entry in value.split(",") if entry.strip()]


def walk(hops: Sequence[Hop | None], peer: Hop, trusted: Callable[[Hop], bool]) -> int:
    """Where the client is in ``hops`` (the header's, left to right): its index,
    or ``len(hops)`` when it is the peer itself. None is an entry that was not an
    address; the walk stops before it."""
    at, current = len(hops), peer
    while at > 0 and trusted(current):
        before = hops[at - 1]
        if before is None:
            break
        at, current = at - 1, before
    return at


@dataclass(frozen=True)
class Origin:
    client: str
    scheme: str | None
    """None: the connection's own."""


def _scheme(value: str | None) -> str | None:
    scheme = (value or "").strip().lower()
    return scheme if scheme in SCHEMES else None


class TrustedProxies:
    """The networks whose forwarding headers are believed."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __contains__(self, hop: object) -> bool:
        if isinstance(hop, IPv6Address) and hop.ipv4_mapped is not None:
            hop = hop.ipv4_mapped
        if not isinstance(hop, IPv4Address | IPv6Address):
            return False
        return any(hop in network for network in self.networks)

    def origin(self, peer: str, headers: CIMultiDictProxy[str]) -> Origin | None:
        """The client and scheme ``headers`` give, when ``peer`` is trusted and
        they say anything; None: the request stands as it came."""
        if not self.networks or not peer:
            return None
        peer_hop = parse_node(peer)
        if peer_hop is None or peer_hop not in self:
            return None
        if hdrs.X_FORWARDED_FOR in headers or hdrs.FORWARDED not in headers:
            hops = [parse_node(e) for e in forwarded_for(headers.getall(hdrs.X_FORWARDED_FOR, ()))]
            protos = forwarded_for(headers.getall(hdrs.X_FORWARDED_PROTO, ()))
            at = walk(hops, peer_hop, self.__contains__)
            scheme = _scheme(protos[-1]) if protos else None
        else:
            elements = forwarded_elements(headers.getall(hdrs.FORWARDED))
            hops = [parse_node(e.get("for", "")) if e else None for e in elements]
            at = walk(hops, peer_hop, self.__contains__)
            stated = elements[min(at, len(elements) - 1)] if elements else None
            scheme = _scheme(stated.get("proto")) if stated else None
        chosen = hops[at] if at < len(hops) else None
        client = peer if chosen is None else str(chosen)
        if client == peer and scheme is None:
            return None
        return Origin(client, scheme)


# --- the middleware -------------------------------------------------------------------


def real_clients(setting: Callable[[], str], parse: Callable[[str], Sequence[str]]) -> Middleware:
    """Middleware: the request as the client made it, when a trusted proxy
    forwarded it. ``setting`` is the current ``trusted_proxies`` text, read on
    every request so that a reloaded configuration applies at once; ``parse``
    checks and splits it (raising on a bad network), here at once and again only
    when the text changes."""
    text = setting()
    current = (text, TrustedProxies(parse(text)))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal current
        text = setting()
        if text != current[0]:
            current = (text, TrustedProxies(parse(text)))
        origin = current[1].origin(request.remote or "", request.headers)
        if origin is not None:
            request = request.clone(remote=origin.client, scheme=origin.scheme or request.scheme)
        return await handler(request)

    return middleware
