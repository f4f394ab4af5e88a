"""What the node issues as an authority of trusted resolution, built from values
and keys: certificates (``HS_CERT``), signatures (``HS_SIGNATURE``), and where
they sit in a record.

Pure: keys, values and times in, value data out (the caller reads the clock).
The JWS is made by :func:`registry.trust.jws.sign_jws`, the digests by
:mod:`registry.trust.digests`, the claims by :mod:`registry.trust.claims`.

How a record is signed, as HANDLE.NET's tools sign one: its old ``HS_SIGNATURE``
values are dropped first; the signature covers every *publicly readable* value
(a resolver without rights sees only those) but signatures; the new
``HS_SIGNATURE`` goes to the lowest free index from 400 up. No other value is
touched, so the bytes that were signed are the bytes served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric import rsa

from registry.crypto import Sm2PrivateKey
from registry.models import PERM_PUBLIC, HandleValue
from registry.secrets import is_sealed_value
from registry.values import HS_PUBKEY, encode_public_key

from .chain import HS_CERT, HS_SIGNATURE
from .claims import (
    DERIVED_PREFIXES,
    HANDLES_UNDER_THIS_PREFIX,
    THIS_HANDLE,
    Claims,
    ClaimsError,
    Permission,
    ValueRef,
)
from .digests import compare, digests_claim
from .jws import JwsError, parse_jws, sign_jws
from .keys import PublicKey, same_key
from .keys import Sm2PublicKey as JwsSm2PublicKey
from .signing import RS256, SM2256, PrivateKey, algorithm_for

CERT_INDEX = 400
"""An identity's certificate: the ``HS_CERT`` at this index of its handle."""
FIRST_SIGNATURE_INDEX = 400
"""A record's ``HS_SIGNATURE`` goes to the lowest free index from here."""
CLOCK_SKEW_SECONDS = 300
"""``nbf`` lies this far before the moment of issue, so a verifier whose clock is a
little behind does not find a fresh signature "not yet valid"."""

SigningKey = rsa.RSAPrivateKey | Sm2PrivateKey
"""What the node signs with: RSA (RS256) or SM2 (SM2256)."""
ALGORITHM_KEYS = {RS256: "an RSA", SM2256: "an SM2"}


class IssueError(ValueError):
    """A key, identity or imported certificate the node cannot issue with (says why)."""


@dataclass(frozen=True, slots=True)
class _Sm2JwsSigner:
    """An SM2 key as the JWS codec signs with it (its public half as a ``publicKey``)."""

    key: Sm2PrivateKey

    def public_key(self) -> JwsSm2PublicKey:
        return JwsSm2PublicKey.from_spki(self.key.public_key().to_der())

    def sign(self, message: bytes, distinguishing_id: bytes) -> bytes:
        return self.key.sign(message, distinguishing_id)


def jws_signer(key: SigningKey) -> PrivateKey:
    """``key`` as :func:`registry.trust.jws.sign_jws` takes it."""
    return _Sm2JwsSigner(key) if isinstance(key, Sm2PrivateKey) else key


def algorithm_of(key: SigningKey) -> str:
    """``RS256`` or ``SM2256``."""
    return algorithm_for(jws_signer(key))


def check_algorithm(key: SigningKey, algorithm: str) -> None:
    """IssueError unless ``key`` signs with ``algorithm`` (RS256 or SM2256)."""
    wanted = algorithm.upper()
    if wanted not in ALGORITHM_KEYS:
        raise IssueError(f"algorithm {algorithm!r} is not RS256 or SM2256")
    if algorithm_of(key) != wanted:
        raise IssueError(f"{wanted} needs {ALGORITHM_KEYS[wanted]} key")


def jws_public_key(key: SigningKey) -> PublicKey:
    """The public half of a signing key as certificates carry it (``publicKey``)."""
    return jws_signer(key).public_key()


def pubkey_value_data(key: SigningKey) -> bytes:
    """The ``HS_PUBKEY`` data of a signing key: HANDLE.NET's binary record for RSA,
    the IDIS SDK's ``SM2_PUB_KEY`` record for SM2."""
    return encode_public_key(key.public_key())


def prefix_permissions(prefix: str) -> tuple[Permission, ...]:
    """What a key certified for a prefix may sign: the prefix record itself, the
    handles under the prefix, and the prefixes derived from it (and theirs)."""
    handle = f"0.NA/{prefix}"
    return (
        Permission(THIS_HANDLE, handle),
        Permission(HANDLES_UNDER_THIS_PREFIX, handle),
        Permission(DERIVED_PREFIXES, handle),
    )


@dataclass(frozen=True, slots=True)
class Validity:
    """When something issued is valid: ``iat``, ``nbf`` and ``exp`` in seconds."""

    issued_at: int
    not_before: int
    expires: int

    @classmethod
    def starting(cls, now: int, days: int) -> Validity:
        return cls(now, now - CLOCK_SKEW_SECONDS, now + days * 86400)


def certificate(
    *,
    subject: ValueRef,
    subject_key: PublicKey,
    issuer: ValueRef,
    issuer_key: SigningKey,
    perms: Sequence[Permission],
    validity: Validity,
    chain: Sequence[str] | None = None,
) -> str:
    """An ``HS_CERT``: ``issuer`` certifies that the key at ``subject`` is
    ``subject_key`` and may sign for ``perms`` (self-issued when they are the same)."""
    claims = Claims(
        iss=str(issuer),
        sub=str(subject),
        exp=validity.expires,
        nbf=validity.not_before,
        iat=validity.issued_at,
        perms=tuple(perms),
        chain=tuple(chain) if chain else None,
        public_key=subject_key,
    )
    return sign_jws(claims.to_json(), jws_signer(issuer_key)).compact()


def is_signature(value: HandleValue) -> bool:
    return value.type.upper() == HS_SIGNATURE


def signed_values(values: Iterable[HandleValue]) -> list[HandleValue]:
    """What a signature of the record covers: its publicly readable values but
    its signatures (sealed secrets are never public)."""
    return [v for v in values if v.public and not is_signature(v) and not is_sealed_value(v.data)]


def signature(
    handle: str,
    values: Iterable[HandleValue],
    *,
    issuer: ValueRef,
    key: SigningKey,
    validity: Validity,
) -> str:
    """An ``HS_SIGNATURE`` of ``handle``: the SHA-256 digests of its signed values."""
    claims = Claims(
        iss=str(issuer),
        sub=handle,
        exp=validity.expires,
        nbf=validity.not_before,
        iat=validity.issued_at,
        digests=digests_claim(sorted(signed_values(values), key=lambda v: v.index)),
    )
    return sign_jws(claims.to_json(), jws_signer(key)).compact()


def with_signature(
    values: Sequence[HandleValue], signature_data: str, *, timestamp: int
) -> list[HandleValue]:
    """The record with its old signatures dropped and ``signature_data`` at the
    lowest free index from :data:`FIRST_SIGNATURE_INDEX` up."""
    kept = [v for v in values if not is_signature(v)]
    taken = {v.index for v in kept}
    index = FIRST_SIGNATURE_INDEX
    while index in taken:
        index += 1
    placed = HandleValue(
        index=index,
        type=HS_SIGNATURE,
        data=signature_data.encode("ascii"),
        timestamp=timestamp,
        permissions=PERM_PUBLIC,
    )
    return sorted([*kept, placed], key=lambda v: v.index)


def signature_index(values: Iterable[HandleValue]) -> int | None:
    """Where the record's (first) signature sits; None when it has none."""
    return next((v.index for v in values if is_signature(v)), None)


def claims_of(data: bytes) -> Claims | None:
    """The claims of an ``HS_CERT`` or ``HS_SIGNATURE`` value's data; None when it is
    no JWS this node reads (someone else's value: left as it is)."""
    try:
        return Claims.from_json(parse_jws(data).payload)
    except (JwsError, ClaimsError):
        return None


def stale_signer(values: Sequence[HandleValue], ours: Callable[[str], bool]) -> str | None:
    """The ``iss`` of a signature that ``ours`` claims and that no longer matches
    the values (a signed value changed or went, or a public one came); None when
    every such signature still holds, or there is none."""
    signatures = [v for v in values if is_signature(v)]
    if not signatures:
        return None
    current = signed_values(values)
    for value in signatures:
        claims = claims_of(value.data)
        if claims is None or claims.iss is None or claims.digests is None or not ours(claims.iss):
            continue
        try:
            found = compare(current, claims.digests)
        except ValueError:  # a digest algorithm this node does not compute: not ours
            continue
        if found.bad or found.missing or found.unsigned:
            return claims.iss
    return None


@dataclass(frozen=True, slots=True)
class Certificate:
    """A certificate as published, read back: its JWS text and claims."""

    jws: str
    claims: Claims

    @property
    def expires(self) -> int | None:
        return self.claims.exp


def read_certificate(data: bytes) -> Certificate | None:
    claims = claims_of(data)
    if claims is None:
        return None
    return Certificate(data.decode("utf-8", "replace").strip(), claims)


def check_imported(jws_text: str, *, identity: ValueRef, key: SigningKey, now: int) -> Certificate:
    """A certificate the trust root issued for this node, checked before it is
    published: it certifies ``identity`` with this very key and is in its dates.
    Its signature is the verifiers' to check, against the root they trust."""
    found = read_certificate(jws_text.encode("utf-8"))
    if found is None:
        raise IssueError("is not a JWS certificate (compact h.p.s or JSON serialization)")
    claims = found.claims
    if claims.sub != str(identity):
        raise IssueError(f"certifies {claims.sub!r}, not this node's identity {identity}")
    if claims.public_key is None or not same_key(claims.public_key, jws_public_key(key)):
        raise IssueError("certifies another key than issuer_key_file's")
    if not claims.in_dates(now):
        raise IssueError(f"is outside its dates (nbf {claims.nbf}, exp {claims.exp})")
    if claims.perms is None:
        raise IssueError("grants no perms")
    return found


def certificate_current(
    value: HandleValue | None, *, subject: ValueRef, key: PublicKey, now: int, renew_before: int
) -> bool:
    """Whether a published certificate still does: it certifies ``subject`` with
    ``key`` and has more than ``renew_before`` seconds to run."""
    if value is None or value.type.upper() != HS_CERT:
        return False
    claims = claims_of(value.data)
    if claims is None or claims.sub != str(subject) or claims.public_key is None:
        return False
    if not same_key(claims.public_key, key):
        return False
    return claims.exp is None or claims.exp - now > renew_before


def identity_values(
    values: Sequence[HandleValue], placed: Iterable[HandleValue], *, timestamp: int
) -> list[HandleValue]:
    """An identity record with ``placed`` values at their indexes (stamped now),
    the others as they were."""
    by_index = {v.index: v for v in values}
    for value in placed:
        by_index[value.index] = replace(value, timestamp=timestamp)
    return [by_index[i] for i in sorted(by_index)]


def cert_value(jws_text: str) -> HandleValue:
    return HandleValue(CERT_INDEX, HS_CERT, jws_text.encode("ascii"), permissions=PERM_PUBLIC)


def pubkey_value(index: int, key: SigningKey) -> HandleValue:
    return HandleValue(index, HS_PUBKEY, pubkey_value_data(key), permissions=PERM_PUBLIC)
