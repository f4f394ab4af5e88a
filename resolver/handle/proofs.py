"""Proofs of identity and signatures of the native protocol (pure crypto, no I/O).

* ``HS_SECKEY``: a MAC keyed with the shared secret over ``nonce ‖ digest``.
* ``HS_PUBKEY``: a signature over ``nonce ‖ digest``, checked with the key the
  identity publishes: RSA PKCS#1 v1.5 or DSA with the hash the proof names; or, as
  the IDIS SDK proves an SM2 identity (login op 2001 and any challenge), hash
  ``SM3``: an SM2 signature whose message is SM3(nonce ‖ digest), under the user ID
  that is the identity's handle (``88.111.1/admin``, no index).
* ``HS_SIGNED`` credentials: the server signs a response when the request set CT.

Signatures are made with the hash the message's version calls for (HANDLE.NET's
rule), and name it as HANDLE.NET does: a 2.x client before 2.7 knows "SHA1" and
refuses "SHA-256". The records these proofs travel in are encoded in :mod:`.credentials`;
the keys and algorithms are :mod:`registry.crypto`'s.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
from dataclasses import replace

from cryptography.hazmat.primitives import hashes

from registry.crypto import keys
from registry.crypto.digests import SHA1_NAME, SHA256_NAME, SM3_NAME, hash_by_name, sm3
from registry.crypto.errors import CryptoError
from registry.crypto.sm2 import Sm2PrivateKey, Sm2PublicKey, UserId
from registry.values import ValueFormatError, decode_public_key

from .codec import OUR_VERSION, CodecError, Message
from .credentials import (
    MAC_HMAC_SHA1,
    MAC_HMAC_SHA256,
    MAC_MD5,
    MAC_PBKDF2_HMAC_SHA1,
    MAC_SHA1,
    MAC_SHA256,
    MAX_PBKDF2_ITERATIONS,
    MAX_PBKDF2_KEY_BITS,
    Credential,
    Pbkdf2Proof,
    SignedProof,
    signed_bytes,
)

PrivateKey = keys.PrivateKey
PublicKey = keys.PublicKey

PUBLISHED_KEYS_KEPT = 4096
"""Decoded HS_PUBKEY values kept for the next proof of the same identity."""


def signature_hash(
    key: PrivateKey | PublicKey, version: tuple[int, int]
) -> tuple[bytes, hashes.HashAlgorithm]:
    """The hash a signature in a message of ``version`` uses, with the name written
    beside it: SHA-256 from 2.7, SHA-1 before; a DSA key keeps SHA-1 below 2.11,
    the first version whose peers take SHA256withDSA; an SM2 key always SM3."""
    kind = keys.kind(key)
    if kind == "SM2":
        return SM3_NAME, hashes.SM3()
    if version >= (2, 11) or (version >= (2, 7) and kind != "DSA"):
        return SHA256_NAME, hashes.SHA256()
    return SHA1_NAME, hashes.SHA1()  # noqa: S303 - what older peers verify


def challenge_message(nonce: bytes, digest: bytes) -> bytes:
    """What a proof covers: the nonce, then the raw request digest."""
    return nonce + digest


def secret_key_mac(
    code: int, secret: bytes, message: bytes, *, pbkdf2: Pbkdf2Proof | None = None
) -> bytes:
    """The MAC an HS_SECKEY holder computes over ``nonce ‖ request digest``."""
    if code in (MAC_MD5, MAC_SHA1, MAC_SHA256):
        name = {MAC_MD5: "md5", MAC_SHA1: "sha1", MAC_SHA256: "sha256"}[code]
        return hashlib.new(name, secret + message + secret).digest()
    if code == MAC_HMAC_SHA1:
        return hmac.digest(secret, message, "sha1")
    if code == MAC_HMAC_SHA256:
        return hmac.digest(secret, message, "sha256")
    if code == MAC_PBKDF2_HMAC_SHA1 and pbkdf2 is not None:
        iterations, key_bits = pbkdf2.iterations, pbkdf2.key_bits
        if not (0 < iterations <= MAX_PBKDF2_ITERATIONS and 0 < key_bits <= MAX_PBKDF2_KEY_BITS):
            raise CodecError("PBKDF2 parameters out of range")
        derived = hashlib.pbkdf2_hmac(
            "sha1", secret, pbkdf2.salt, pbkdf2.iterations, math.ceil(pbkdf2.key_bits / 8)
        )
        return hmac.digest(derived, message, "sha1")
    raise CodecError(f"unknown secret-key MAC code {code}")


def encode_secret_key_proof(
    code: int, secret: bytes, message: bytes, *, salt: bytes = b"", iterations: int = 10_000
) -> bytes:
    """SignedResponse of an HS_SECKEY answer: code byte, then the MAC (or PBKDF2 record)."""
    if code == MAC_PBKDF2_HMAC_SHA1:
        params = Pbkdf2Proof(salt, iterations, 160, b"")
        mac = secret_key_mac(code, secret, message, pbkdf2=params)
        return bytes([code]) + replace(params, mac=mac).to_bytes()
    return bytes([code]) + secret_key_mac(code, secret, message)


def verify_secret_key_proof(secret: bytes, signed_response: bytes, message: bytes) -> bool:
    """Check an HS_SECKEY answer: code byte, then the MAC (or PBKDF2 record)."""
    if not signed_response:
        return False
    code, rest = signed_response[0], signed_response[1:]
    try:
        if code == MAC_PBKDF2_HMAC_SHA1:
            proof = Pbkdf2Proof.from_bytes(rest)
            expected = secret_key_mac(code, secret, message, pbkdf2=proof)
            return hmac.compare_digest(expected, proof.mac)
        return hmac.compare_digest(secret_key_mac(code, secret, message), rest)
    except CodecError:
        return False


@functools.lru_cache(maxsize=PUBLISHED_KEYS_KEPT)
def _published_key(key_data: bytes) -> PublicKey:
    """The key of an HS_PUBKEY value (decoded once per distinct value: the same
    identity logs in again and again)."""
    return decode_public_key(key_data)


def verify_public_key_proof(
    key_data: bytes, signed_response: bytes, message: bytes, *, identity: UserId = b""
) -> bool:
    """Check an HS_PUBKEY answer against the identity's published key. ``identity``,
    the handle the answer names (no index), is an SM2 proof's user ID."""
    try:
        key = _published_key(key_data)
        proof = SignedProof.from_bytes(signed_response)
    except (ValueFormatError, CodecError):
        return False
    algorithm = hash_by_name(proof.algorithm)
    if algorithm is None:
        return False
    if isinstance(key, Sm2PublicKey):
        if not isinstance(algorithm, hashes.SM3):
            return False
        return key.verify(proof.signature, sm3(message), identity)
    return keys.verify(key, proof.signature, message, algorithm)


def public_key_proof(
    key: PrivateKey,
    message: bytes,
    version: tuple[int, int] = OUR_VERSION,
    *,
    identity: UserId = b"",
) -> bytes:
    """A client's HS_PUBKEY answer, in a challenge answer of ``version``. An SM2 key
    signs SM3(message) under ``identity`` (the handle it proves, no index)."""
    if isinstance(key, Sm2PrivateKey):
        if not identity:
            raise CryptoError("an SM2 proof needs the identity's handle as its user ID")
        return SignedProof(SM3_NAME, key.sign(sm3(message), identity)).to_bytes()
    name, algorithm = signature_hash(key, version)
    return SignedProof(name, keys.sign(key, message, algorithm)).to_bytes()


def sign_response(message: Message, key: PrivateKey) -> Message:
    """Attach an HS_SIGNED credential covering the response (for CT requests)."""
    name, algorithm = signature_hash(key, message.envelope.version)
    signature = keys.sign(key, signed_bytes(message), algorithm)
    credential = Credential(digest_algorithm=name, signature=signature)
    return replace(message, credential=credential.to_bytes())


def verify_response(message: Message, key: PublicKey) -> bool:
    """A client's check of a signed response against the server's published key."""
    if not message.credential:
        return False
    try:
        credential = Credential.from_bytes(message.credential)
    except CodecError:
        return False
    if credential.signature_type != b"HS_SIGNED":
        return False
    algorithm = hash_by_name(credential.digest_algorithm)
    if algorithm is None:
        return False
    covered = signed_bytes(message, credential.signer_index)
    return keys.verify(key, credential.signature, covered, algorithm)
