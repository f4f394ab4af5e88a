"""Authentication in the native protocol, as bytes: the challenge bodies (RC 402,
ops 200, 201 and 2001), the proofs a challenge answer carries (HS_SECKEY MAC
codes and PBKDF2 records, HS_PUBKEY signatures) and the HS_SIGNED credential
with what it covers.

Pure encodings beside :mod:`.codec`, which frames the messages they travel in;
the MACs and signatures themselves are computed and checked in :mod:`.proofs`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from registry.wire import blob

from .codec import Message, body_reader

# --- challenges and logins ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """RC 402: a nonce to sign (after the mandatory request digest)."""

    nonce: bytes

    def to_bytes(self) -> bytes:
        return blob(self.nonce)

    @classmethod
    def from_bytes(cls, body: bytes) -> Challenge:
        return cls(body_reader(body, "challenge").blob())


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    """Op 200: the proof for a challenge."""

    auth_type: bytes
    handle: bytes
    index: int
    signed_response: bytes

    def to_bytes(self) -> bytes:
        return (
            blob(self.auth_type)
            + blob(self.handle)
            + struct.pack(">I", self.index)
            + blob(self.signed_response)
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> ChallengeAnswer:
        r = body_reader(body, "challenge answer")
        return cls(r.blob(), r.blob(), r.u32(), r.blob())


@dataclass(frozen=True, slots=True)
class VerifyChallenge:
    """Op 201: does this HS_SECKEY MAC check out? (server to server)"""

    handle: bytes
    index: int
    nonce: bytes
    digest: bytes
    signed_response: bytes

    def to_bytes(self) -> bytes:
        return (
            blob(self.handle)
            + struct.pack(">I", self.index)
            + blob(self.nonce)
            + blob(self.digest)
            + blob(self.signed_response)
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> VerifyChallenge:
        r = body_reader(body, "verify challenge")
        return cls(r.blob(), r.u32(), r.blob(), r.blob(), r.blob())


@dataclass(frozen=True, slots=True)
class Login:
    """Op 2001 (IDIS LOGIN_ID_SYSTEM): the identity to bind to the connection."""

    handle: bytes
    index: int

    def to_bytes(self) -> bytes:
        return blob(self.handle) + struct.pack(">I", self.index)

    @classmethod
    def from_bytes(cls, body: bytes) -> Login:
        r = body_reader(body, "login")
        return cls(r.blob(), r.u32())


# --- HS_SECKEY and HS_PUBKEY proofs ---------------------------------------------

MAC_MD5 = 1
MAC_SHA1 = 2
MAC_SHA256 = 3
MAC_HMAC_SHA1 = 0x12
MAC_HMAC_SHA256 = 0x13
MAC_PBKDF2_HMAC_SHA1 = 0x22


@dataclass(frozen=True, slots=True)
class Pbkdf2Proof:
    salt: bytes
    iterations: int
    key_bits: int
    mac: bytes

    def to_bytes(self) -> bytes:
        return blob(self.salt) + struct.pack(">II", self.iterations, self.key_bits) + blob(self.mac)

    @classmethod
    def from_bytes(cls, data: bytes) -> Pbkdf2Proof:
        r = body_reader(data, "PBKDF2 proof")
        return cls(r.blob(), r.u32(), r.u32(), r.blob())


MAX_PBKDF2_ITERATIONS = 100_000
"""Ten times HANDLE.NET's default: the client picks the cost the server pays."""
MAX_PBKDF2_KEY_BITS = 512


@dataclass(frozen=True, slots=True)
class SignedProof:
    """SignedResponse of an HS_PUBKEY answer: hash algorithm name and signature."""

    algorithm: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        return blob(self.algorithm) + blob(self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedProof:
        r = body_reader(data, "signed response")
        return cls(r.blob(), r.blob())


# --- credentials (HS_SIGNED) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    signature_type: bytes = b"HS_SIGNED"
    digest_algorithm: bytes = b"SHA-256"
    signature: bytes = b""
    signer_handle: bytes = b""
    signer_index: int = 0
    """HANDLE.NET reuses this as the session counter."""

    def to_bytes(self) -> bytes:
        section = blob(self.digest_algorithm) + blob(self.signature)
        return (
            b"\x00\x00\x00\x00"
            + blob(self.signer_handle)
            + struct.pack(">I", self.signer_index)
            + blob(self.signature_type)
            + blob(section)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Credential:
        r = body_reader(data, "credential")
        r.take(4)  # version, reserved, flags
        signer_handle = r.blob()
        signer_index = r.u32()
        signature_type = r.blob()
        section = body_reader(r.blob(), "signature section")
        return cls(signature_type, section.blob(), section.blob(), signer_handle, signer_index)


def signed_bytes(message: Message, counter: int = 0) -> bytes:
    """What an HS_SIGNED credential covers, by the message's version: header and
    body, led from 2.7 on by the versions (and from 2.8 the suggested version), the
    session id, the request id and ``counter`` (the credential's signer index, which
    HANDLE.NET uses as a session counter; ours is always 0)."""
    env = message.envelope
    if env.version < (2, 6):
        return message.signed_part
    if env.version == (2, 6):
        # HANDLE.NET at exactly 2.6 writes each int4 over the last: what it signs is
        # the versions, the session id's top half, the counter and six zero bytes.
        prefix = bytes([env.major, env.minor]) + struct.pack(">I", env.session_id)[:2]
        return prefix + struct.pack(">I", counter) + bytes(6) + message.signed_part
    prefix = bytes([env.major, env.minor])
    if env.version >= (2, 8):
        prefix += bytes([env.suggested_major, env.suggested_minor])
    return (
        prefix + struct.pack(">III", env.session_id, env.request_id, counter) + message.signed_part
    )
