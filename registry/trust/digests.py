"""Value digests: what an ``HS_SIGNATURE`` vouches for.

Each signed value is digested over its encoding without index and timestamp
(:func:`registry.values.encode_value_content`) — so the node restamping a value
on write never breaks its signature, while any change of its TTL, permissions,
type, data or references does. The ``digests`` claim lists them by index,
each digest in standard base64.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from registry.models import HandleValue
from registry.values import encode_value_content

from .claims import Digests, ValueDigest

SHA256 = "SHA-256"
_HASHLIB_NAMES = {"SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512", "SHA-1": "sha1"}


class UnknownDigest(ValueError):
    """A ``digests`` claim naming an algorithm this node does not compute."""


def _digester(alg: str) -> str | None:
    """The hashlib name of a Java ``MessageDigest`` name; None for SM3."""
    upper = alg.upper()
    if upper in ("SM3",):
        return None
    name = _HASHLIB_NAMES.get(upper) or _HASHLIB_NAMES.get(upper.replace("SHA", "SHA-", 1))
    if name is None:
        raise UnknownDigest(f"digest algorithm {alg!r} is not supported")
    return name


def value_digest(value: HandleValue, alg: str = SHA256) -> bytes:
    """The digest of one value (``alg`` as the claim names it: SHA-256, SHA-384,
    SHA-512, SHA-1, or SM3 which the IDIS SDK also uses)."""
    content = encode_value_content(value)
    name = _digester(alg)
    if name is None:
        digest = hashes.Hash(hashes.SM3())
        digest.update(content)
        return digest.finalize()
    return hashlib.new(name, content).digest()


def digests_claim(values: Iterable[HandleValue], alg: str = SHA256) -> Digests:
    """The ``digests`` claim of a signature over ``values``."""
    return Digests(
        alg,
        tuple(
            ValueDigest(v.index, base64.b64encode(value_digest(v, alg)).decode("ascii"))
            for v in values
        ),
    )


@dataclass(frozen=True, slots=True)
class DigestComparison:
    """How a record's values meet a signature's digests (indexes, ascending)."""

    verified: tuple[int, ...]
    """Signed, and unchanged."""
    bad: tuple[int, ...]
    """Signed, but the value changed since."""
    missing: tuple[int, ...]
    """Signed, but no longer in the record."""
    unsigned: tuple[int, ...]
    """In the record, not in the signature."""


def compare(values: Iterable[HandleValue], claim: Digests) -> DigestComparison:
    """Compare values with a ``digests`` claim. A digest is compared as the
    base64 text the claim holds (HANDLE.NET compares strings too)."""
    claimed: dict[int, set[str]] = {}
    for item in claim.digests:
        claimed.setdefault(item.index, set()).add(item.digest)
    verified: list[int] = []
    bad: list[int] = []
    unsigned: list[int] = []
    present: set[int] = set()
    for value in values:
        present.add(value.index)
        wanted = claimed.get(value.index)
        if wanted is None:
            unsigned.append(value.index)
            continue
        actual = base64.b64encode(value_digest(value, claim.alg)).decode("ascii")
        (verified if actual in wanted else bad).append(value.index)
    missing = sorted(i for i in claimed if i not in present)
    return DigestComparison(
        verified=tuple(sorted(verified)),
        bad=tuple(sorted(bad)),
        missing=tuple(missing),
        unsigned=tuple(sorted(unsigned)),
    )
