"""Building the certificate chain above a signature.

From a JWS, follow its ``chain`` claim — or, without one, the handle of its
``iss`` — to the newest ``HS_CERT`` whose ``sub`` is the JWS's ``iss``; repeat
from that certificate until one is self-issued (the root). At most
:data:`MAX_LINKS` links below the root, and no handle visited twice.

The walk is pure: it reads records only through the ``values_of`` callable it
is given, so the caller decides where they come from (this node's resolver,
recursion to other nodes, a fixed set in a test).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from registry.grammar import ascii_upper
from registry.models import HandleValue

from .claims import Claims, ClaimsError, ValueRef
from .jws import Jws, JwsError, parse_jws

HS_CERT = "HS_CERT"
HS_SIGNATURE = "HS_SIGNATURE"
MAX_LINKS = 50
"""Most signatures in a chain below its self-issued root (HANDLE.NET's bound)."""

ValuesOf = Callable[[str], Awaitable[Sequence[HandleValue] | None]]
"""The publicly readable values of a handle; None when the handle does not exist.
Raises :class:`ResolutionFailed` when the handle could not be asked for."""


class ResolutionFailed(Exception):
    """The values of a handle could not be obtained (its node did not answer…)."""


class ChainError(Exception):
    """The chain cannot be built; the message says where it broke."""


@dataclass(frozen=True, slots=True)
class Link:
    """One signature of a chain: the record's ``HS_SIGNATURE`` or an ``HS_CERT``."""

    jws: Jws
    claims: Claims
    location: ValueRef | None
    """Where it was read (``index:handle``); None for a JWS given directly."""
    issuer: Claims
    """The claims that certify its signer: the next link's, or its own for the root."""

    @property
    def self_issued(self) -> bool:
        return self.claims.self_issued


def prefix_upper(handle: str) -> str:
    """A handle with its prefix upper-cased (the case-insensitive part)."""
    prefix, sep, suffix = handle.partition("/")
    return ascii_upper(prefix) + sep + suffix


def same_handle(a: str | None, b: str | None) -> bool:
    """Equal handles, the prefix compared without case (HANDLE.NET ``equalsPrefixCI``)."""
    return a is not None and b is not None and prefix_upper(a) == prefix_upper(b)


REMEMBERED_BYTES = 16 * 1024
"""Certificates and signed inputs up to this size are remembered (a certificate is
1–3 KiB): the memory the caches may take stays a few MiB whatever records say."""


def read_certificate(data: bytes) -> tuple[Jws, Claims] | str:
    """A certificate's JWS and claims, or why it is none. Remembered by its bytes:
    the same few certificates end every chain, and their bytes never change."""
    if len(data) > REMEMBERED_BYTES:
        return _read_certificate.__wrapped__(data)
    return _read_certificate(data)


@functools.lru_cache(maxsize=512)
def _read_certificate(data: bytes) -> tuple[Jws, Claims] | str:
    try:
        jws = parse_jws(data)
        return jws, Claims.from_json(jws.payload)
    except (JwsError, ClaimsError) as exc:
        return str(exc)


def forget_certificates() -> None:
    _read_certificate.cache_clear()


def _newest_certificate(
    values: Sequence[HandleValue], subject: str, handle: str
) -> tuple[Jws, Claims, ValueRef] | None:
    """The newest (greatest ``iat``) ``HS_CERT`` whose ``sub`` is ``subject``.
    An unreadable certificate is passed over: it cannot hide a good one."""
    best: tuple[Jws, Claims, ValueRef] | None = None
    for value in values:
        if value.type.upper() != HS_CERT:
            continue
        certificate = read_certificate(value.data)
        if isinstance(certificate, str):
            continue
        jws, claims = certificate
        if claims.sub != subject:
            continue
        if best is None or _issued_later(claims, best[1]):
            best = (jws, claims, ValueRef(handle, value.index))
    return best


def _issued_later(claims: Claims, than: Claims) -> bool:
    """HANDLE.NET's order: a certificate without ``iat`` is never the later one."""
    if claims.iat is None:
        return False
    return than.iat is None or claims.iat > than.iat


async def _lookup(link: str, subject: str, values_of: ValuesOf) -> tuple[Jws, Claims, ValueRef]:
    """The parent named by one ``chain`` entry (or the issuer's handle)."""
    ref = ValueRef.parse(link)
    try:
        values = await values_of(ref.handle)
    except ResolutionFailed as exc:
        raise ChainError(f"could not resolve {ref.handle}: {exc}") from None
    if values is None:
        raise ChainError(f"{ref.handle} does not exist")
    if ref.index > 0:
        chosen = next((v for v in values if v.index == ref.index), None)
        if chosen is None:
            raise ChainError(f"{ref} does not exist")
        certificate = read_certificate(chosen.data)
        if isinstance(certificate, str):
            raise ChainError(f"{ref} is not a certificate: {certificate}")
        return certificate[0], certificate[1], ref
    found = _newest_certificate(values, subject, ref.handle)
    if found is None:
        raise ChainError(f"{ref.handle} has no HS_CERT about {subject}")
    return found


async def build_chain(
    jws: Jws, claims: Claims, values_of: ValuesOf, *, location: ValueRef | None = None
) -> list[Link]:
    """The chain from ``jws`` (already parsed, with its ``claims``) up to a
    self-issued certificate, ``jws`` first. Raises :class:`ChainError`."""
    found: list[tuple[Jws, Claims, ValueRef | None]] = [(jws, claims, location)]
    seen: set[str] = set()
    pending: list[str] = []
    while not found[-1][1].self_issued:
        child = found[-1][1]
        if len(found) > MAX_LINKS:
            raise ChainError(f"chain is longer than {MAX_LINKS} links below its root")
        if child.iss is None:
            raise ChainError(f"{_named(found[-1])} has no iss")
        if not pending:
            pending = list(child.chain or ()) or [ValueRef.parse(child.iss).handle]
        link = pending.pop(0)
        key = prefix_upper(link)
        if key in seen:
            raise ChainError(f"chain loops back to {link}")
        seen.add(key)
        parent_jws, parent, where = await _lookup(link, child.iss, values_of)
        if not same_handle(parent.sub, child.iss):
            raise ChainError(f"chain is broken: {where} is about {parent.sub}, not {child.iss}")
        found.append((parent_jws, parent, where))
    links = []
    for position, (link_jws, link_claims, link_location) in enumerate(found):
        issuer = found[position + 1][1] if position + 1 < len(found) else link_claims
        links.append(Link(link_jws, link_claims, link_location, issuer))
    return links


def _named(item: tuple[Jws, Claims, ValueRef | None]) -> str:
    return str(item[2]) if item[2] is not None else "the signature"
