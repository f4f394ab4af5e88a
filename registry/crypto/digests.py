"""Hashes and MACs by the names the protocols write (pure, no I/O).

The Handle protocol names a signature's hash in text — HANDLE.NET writes
``SHA-256`` and ``SHA1``, decoders also meet ``SHA256``, ``SHA-1``, ``SHA-512``;
IDIS writes ``SM3`` — or, in old proofs, as a one-byte code. One table here.
"""

from __future__ import annotations

import hmac as _hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _crypto_hmac

from .errors import CryptoError

SHA256_NAME = b"SHA-256"
"""How HANDLE.NET spells SHA-256 in the signatures it makes."""
SHA1_NAME = b"SHA1"
"""How HANDLE.NET spells SHA-1, the only hash peers before 2.7 sign with."""
SM3_NAME = b"SM3"
"""How IDIS spells SM3 (SM2 proofs and credentials)."""

_BY_NAME: dict[bytes, type[hashes.HashAlgorithm]] = {
    b"SHA-256": hashes.SHA256,
    b"SHA256": hashes.SHA256,
    b"SHA-1": hashes.SHA1,
    b"SHA1": hashes.SHA1,
    b"SHA-512": hashes.SHA512,
    b"SHA512": hashes.SHA512,
    b"SM3": hashes.SM3,
}
_BY_CODE: dict[int, type[hashes.HashAlgorithm]] = {
    2: hashes.SHA1,
    3: hashes.SHA256,
}
"""One-byte hash codes of the Handle protocol (request digests, old proofs); MD5 (1)
is left out: nothing is signed with it any more."""


def hash_by_name(name: bytes | str) -> hashes.HashAlgorithm | None:
    """The hash a signature names, by name (any case) or by a one-byte code; None if
    unknown."""
    key = name.encode("ascii", "replace") if isinstance(name, str) else bytes(name)
    found = _BY_CODE.get(key[0]) if len(key) == 1 else _BY_NAME.get(key.upper())
    return found() if found else None


def hash_name(algorithm: hashes.HashAlgorithm) -> bytes:
    """The name written beside a signature made with ``algorithm``."""
    names = {"sha256": SHA256_NAME, "sha1": SHA1_NAME, "sha512": b"SHA-512", "sm3": SM3_NAME}
    try:
        return names[algorithm.name]
    except KeyError:
        raise CryptoError(f"no protocol name for hash {algorithm.name}") from None


def digest(algorithm: hashes.HashAlgorithm | bytes | str, data: bytes) -> bytes:
    """``data`` hashed with an algorithm or a named one."""
    chosen = _algorithm(algorithm)
    hasher = hashes.Hash(chosen)
    hasher.update(data)
    return hasher.finalize()


def sm3(data: bytes) -> bytes:
    """SM3 (GB/T 32905), 32 bytes."""
    return digest(hashes.SM3(), data)


def hmac(algorithm: hashes.HashAlgorithm | bytes | str, key: bytes, data: bytes) -> bytes:
    """HMAC of ``data`` under ``key`` (HMAC-SM3 too)."""
    chosen = _algorithm(algorithm)
    if chosen.name in ("sha1", "sha256", "sha512"):
        return _hmac.digest(key, data, chosen.name)  # the standard library's is faster
    mac = _crypto_hmac.HMAC(key, chosen)
    mac.update(data)
    return mac.finalize()


def hmac_matches(
    algorithm: hashes.HashAlgorithm | bytes | str, key: bytes, data: bytes, mac: bytes
) -> bool:
    """Does ``mac`` authenticate ``data``? Compared in constant time."""
    return _hmac.compare_digest(hmac(algorithm, key, data), mac)


def _algorithm(algorithm: hashes.HashAlgorithm | bytes | str) -> hashes.HashAlgorithm:
    if isinstance(algorithm, hashes.HashAlgorithm):
        return algorithm
    found = hash_by_name(algorithm)
    if found is None:
        raise CryptoError(f"unknown hash {algorithm!r}")
    return found
