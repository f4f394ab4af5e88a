"""Password and secret-key hashes.

A password or secret key is kept as an argon2id hash (argon2-cffi's PHC
string, ``$argon2id$v=19$m=…,t=…,p=…$salt$hash``) of its ``sha256`` hex
digest — SNMS hands passwords around as that digest — beside the digest
itself, sealed for the ``/identity/token/v1`` login (:class:`StoredSecret`).

Hashes made before — salted scrypt (``scrypt$N$r$p$salt$hash``) by earlier
releases, or argon2 at other parameters than :data:`PARAMETERS` — still
verify, and :func:`check_plain` hands back the secret hashed anew, for the
login that proved it to store in their place.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass

from argon2 import Parameters, PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from .secrets import NodeKey, sha256_hex

# OWASP's Password Storage Cheat Sheet puts argon2id with 19 MiB, 2 passes and one
# lane first. One lane, as a node answers many logins on few cores with each hash
# on a worker thread of its own (more lanes trade throughput for latency), and
# 19 MiB, so a burst of logins cannot make the node allocate much; the RFC 9106
# low-memory profile (64 MiB, 3 passes, 4 lanes) took four times as long here.
PARAMETERS = Parameters(
    type=Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19 * 1024,
    parallelism=1,
)

_ARGON2_MARK = "$argon2"
_hasher = PasswordHasher.from_parameters(PARAMETERS)


def hash_secret(secret: str) -> str:
    """A new salted argon2id hash at :data:`PARAMETERS`."""
    return _hasher.hash(secret)


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``stored`` (argon2 at any parameters, or older scrypt) is a hash of ``secret``."""
    if stored.startswith(_ARGON2_MARK):
        try:
            return _hasher.verify(stored, secret)
        except (VerificationError, InvalidHashError):
            return False
    return _verify_scrypt(secret, stored)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made otherwise than :func:`hash_secret` makes hashes now."""
    if not stored.startswith(_ARGON2_MARK):
        return True
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@functools.cache
def dummy_hash() -> str:
    """A hash to check unknown logins against: the same scheme and parameters as real
    hashes, so the time a login takes tells no names. Made once per process."""
    return hash_secret(sha256_hex("no such user"))


def verify_plain(secret: str, stored: str) -> bool:
    return verify_secret(sha256_hex(secret), stored)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    rehashed: str | None = None
    """The secret hashed at :data:`PARAMETERS`, when it checked out against an
    outdated hash: to be stored in that hash's place."""


def check_plain(secret: str, stored: str) -> Verdict:
    """Verify a plain secret and, when its hash is outdated, hash it anew — in one
    call, as both are slow and belong on a worker thread."""
    digest = sha256_hex(secret)
    if not verify_secret(digest, stored):
        return Verdict(ok=False)
    return Verdict(ok=True, rehashed=hash_secret(digest) if needs_rehash(stored) else None)


def _verify_scrypt(secret: str, stored: str) -> bool:
    """The salted scrypt hashes that releases before argon2id stored."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        actual = hashlib.scrypt(
            secret.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """What the store keeps for one password or secret key.

    SNMS hands passwords around as ``sha256(plain)`` hex (the enterprise
    application carries only that), so the digest is the unit kept here.
    """

    hash: str
    digest_sealed: bytes

    @classmethod
    def from_plain(cls, secret: str, key: NodeKey) -> StoredSecret:
        return cls.from_digest(sha256_hex(secret), key)

    @classmethod
    def from_digest(cls, digest_hex: str, key: NodeKey) -> StoredSecret:
        digest_hex = digest_hex.lower()
        return cls(hash_secret(digest_hex), key.seal(digest_hex.encode()))
