"""Identifier ↔ DNS name mapping: pure, reversible, one place.

A handle ``<prefix>/<suffix>`` becomes ``<suffix label(s)>._.<prefix segments,
reversed>.<zone>``, so the zone's tree follows the prefix hierarchy and a
sub-prefix (``88.100.1.5``) never collides with a suffix (``88.100.1/5``)::

    88.100.1/abc          abc._.1.100.88.<zone>
    88.100.1/SN-2026-01   b32-ad9kscho68o32c1k64._.1.100.88.<zone>

Each part stays as it is when it already is a plain lowercase label
(``[a-z0-9]``, inner ``-``, at most 63 octets) and does not start with
``b32-``, ``h-`` or ``xn--``. Anything else is written ``b32-`` + lowercase
base32hex of its UTF-8 bytes (no padding), over as many labels as it takes:
that keeps case and every character, in labels any resolver accepts. Prefix
segments are case-insensitive, so they are lowercased first; so is the suffix
when the node compares suffixes case-insensitively. A handle whose labels
below the zone would pass :data:`MAX_RELATIVE` octets is named by a digest of
its suffix instead, ``h-<26 base32hex characters>._.<prefix>``; its answers
carry the full name in a TXT record. (That bound leaves room for any zone of
up to :data:`MAX_ZONE` octets, so a handle's name below the zone never
depends on the zone: the store keeps it, see :func:`dns_path`.)

An OID ``1.2.156.86.1.3.7`` becomes its arcs reversed under the ORS-style
subtree: ``7.3.1.86.156.2.1.oid-res.<zone>``.

Every identifier has exactly one name: a spelling that decodes to it but is
not the one :meth:`ZoneNames.of_identifier` gives is no name of it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import dns.name

from .grammar import HandleName, ascii_lower

SEPARATOR = b"_"
OID_SUBTREE = b"oid-res"
B32 = "b32-"
HASHED = "h-"
_RESERVED = (B32, HASHED, "xn--")
_PLAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_B32_CHARS = re.compile(r"[0-9a-v]+")
_ARC = re.compile(r"0|[1-9][0-9]*")
MAX_LABEL = 63
MAX_NAME = 255
MAX_ZONE = 64
"""Longest zone name served, in wire octets (root label included)."""
MAX_RELATIVE = MAX_NAME - MAX_ZONE
"""Longest name of an identifier below the zone, in wire octets."""
SUFFIX_DIGEST_CHARS = 26


class NotAnIdentifier(ValueError):
    """A DNS name in the zone that no identifier could have."""


@dataclass(frozen=True, slots=True)
class Apex:
    """The zone's own name."""


@dataclass(frozen=True, slots=True)
class Branch:
    """A name above identifiers: a prefix's node (``1.100.88.<zone>``, with or
    without ``_``), or arcs of the OID subtree (``arcs`` in OID order)."""

    prefix: str = ""
    arcs: tuple[int, ...] = ()
    oid: bool = False


@dataclass(frozen=True, slots=True)
class Named:
    """An identifier spelled out: ``text`` parses as a handle or an OID."""

    text: str


@dataclass(frozen=True, slots=True)
class Hashed:
    """A handle named by :func:`suffix_digest` of its suffix."""

    prefix: str
    digest: str


Target = Apex | Branch | Named | Hashed


def suffix_digest(name_key: str) -> str:
    """A short, stable digest of a handle's normalized suffix."""
    suffix = name_key.partition("/")[2]
    digest = hashlib.sha256(suffix.encode("utf-8")).digest()
    return base64.b32hexencode(digest).decode("ascii").lower()[:SUFFIX_DIGEST_CHARS]


def _plain(text: str) -> bool:
    return bool(_PLAIN.fullmatch(text)) and not text.startswith(_RESERVED)


def _encode_part(text: str) -> list[bytes]:
    """One part as labels: itself when plain, else ``b32-`` and base32hex."""
    if _plain(text):
        return [text.encode("ascii")]
    encoded = B32 + base64.b32hexencode(text.encode("utf-8")).decode("ascii").rstrip("=").lower()
    return [encoded[i : i + MAX_LABEL].encode("ascii") for i in range(0, len(encoded), MAX_LABEL)]


def _decode_part(labels: list[str]) -> str:
    first = labels[0]
    if not first.startswith(B32):
        if len(labels) == 1 and _plain(first):
            return first
        raise NotAnIdentifier(f"label {first!r} is neither plain nor {B32}")
    chars = first[len(B32) :] + "".join(labels[1:])
    if not _B32_CHARS.fullmatch(chars) or any(len(x) != MAX_LABEL for x in labels[:-1]):
        raise NotAnIdentifier("not base32hex in canonical labels")
    padded = chars.upper() + "=" * (-len(chars) % 8)
    try:
        text = base64.b32hexdecode(padded).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise NotAnIdentifier("not base32hex of UTF-8 text") from None
    if _encode_part(text) != [x.encode("ascii") for x in labels]:
        raise NotAnIdentifier("not the canonical spelling")  # one name, one spelling
    return text


def _prefix_labels(prefix: str) -> list[bytes]:
    """Segments reversed, one label each (a node's prefixes are short numbers;
    a segment whose encoding needs two labels could not be told apart)."""
    labels: list[bytes] = []
    for segment in reversed(ascii_lower(prefix).split(".")):
        encoded = _encode_part(segment)
        if len(encoded) != 1:
            raise NotAnIdentifier(f"prefix segment {segment!r} does not fit a DNS label")
        labels.extend(encoded)
    return labels


def relative_labels(name: HandleName, *, suffix_case_sensitive: bool = True) -> list[bytes]:
    """An identifier's labels below the zone; :class:`NotAnIdentifier` when its
    prefix cannot be written in DNS (a segment or the whole too long)."""
    if name.oid:
        return [*(arc.encode("ascii") for arc in reversed(name.text.split("."))), OID_SUBTREE]
    suffix = name.suffix if suffix_case_sensitive else ascii_lower(name.suffix)
    tail = [SEPARATOR, *_prefix_labels(name.prefix)]
    labels = [*_encode_part(suffix), *tail]
    if sum(len(label) + 1 for label in labels) > MAX_RELATIVE:
        labels = [(HASHED + suffix_digest(name.key)).encode("ascii"), *tail]
        if sum(len(label) + 1 for label in labels) > MAX_RELATIVE:
            raise NotAnIdentifier(f"the prefix {name.prefix!r} is too long for a DNS name")
    return labels


def path_of(labels: Sequence[bytes | str]) -> str:
    """Labels below the zone as a path from the zone down (``88.100.1._.abc``):
    the names below a name are those whose path extends its path by ``.``."""
    texts = [x.decode("ascii") if isinstance(x, bytes) else x for x in reversed(labels)]
    return ".".join(texts)


def dns_path(name: HandleName, *, suffix_case_sensitive: bool = True) -> str | None:
    """What the store keeps of an identifier's DNS name (None: it has none)."""
    try:
        return path_of(relative_labels(name, suffix_case_sensitive=suffix_case_sensitive))
    except NotAnIdentifier:
        return None


@dataclass(frozen=True)
class ZoneNames:
    """The mapping for one zone. ``suffix_case_sensitive`` follows the node's grammar."""

    zone: dns.name.Name
    suffix_case_sensitive: bool = True

    @classmethod
    def of(cls, zone: str, *, suffix_case_sensitive: bool = True) -> ZoneNames:
        name = dns.name.from_text(zone)
        if len(name.to_wire() or b"") > MAX_ZONE:
            raise ValueError(f"the zone name is longer than {MAX_ZONE} octets")
        return cls(name, suffix_case_sensitive)

    @property
    def oid_subtree(self) -> dns.name.Name:
        return dns.name.Name((OID_SUBTREE, *self.zone.labels))

    def of_identifier(self, name: HandleName) -> dns.name.Name:
        """The DNS name of a parsed identifier (its OID form when named by one)."""
        labels = relative_labels(name, suffix_case_sensitive=self.suffix_case_sensitive)
        return dns.name.Name((*labels, *self.zone.labels))

    def relative(self, qname: dns.name.Name) -> list[str]:
        """The labels of a name in the zone below the zone, lowercase."""
        if not qname.is_subdomain(self.zone):
            raise NotAnIdentifier(f"{qname} is outside {self.zone}")
        labels = [label.decode("ascii", "replace").lower() for label in qname.labels]
        return labels[: len(labels) - len(self.zone.labels)]

    def path(self, qname: dns.name.Name) -> str:
        return path_of(self.relative(qname))

    def target(self, qname: dns.name.Name) -> Target:
        """What a name in the zone stands for; :class:`NotAnIdentifier` if nothing can."""
        relative = self.relative(qname)
        if not relative:
            return Apex()
        if relative[-1] == OID_SUBTREE.decode():
            arcs = relative[:-1]
            if not all(_ARC.fullmatch(arc) for arc in arcs):
                raise NotAnIdentifier("OID arcs are decimal numbers")
            numbers = tuple(int(arc) for arc in reversed(arcs))
            if len(numbers) < 2:
                return Branch(arcs=numbers, oid=True)
            return Named(".".join(reversed(arcs)))
        separator = SEPARATOR.decode()
        if separator in relative:
            at = relative.index(separator)
            suffix_labels, prefix_labels = relative[:at], relative[at + 1 :]
        else:
            suffix_labels, prefix_labels = [], relative
        prefix = ".".join(_decode_part([label]) for label in reversed(prefix_labels))
        if not prefix_labels or separator in prefix_labels:
            raise NotAnIdentifier("a prefix needs at least one segment and one separator")
        if not suffix_labels:
            return Branch(prefix=prefix)
        first = suffix_labels[0]
        if first.startswith(HASHED) and len(suffix_labels) == 1:
            digest = first[len(HASHED) :]
            if len(digest) != SUFFIX_DIGEST_CHARS or not _B32_CHARS.fullmatch(digest):
                raise NotAnIdentifier("a hashed name has 26 base32hex characters")
            return Hashed(prefix, digest)
        return Named(f"{prefix}/{_decode_part(suffix_labels)}")
