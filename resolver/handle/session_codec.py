"""Sessions of the native protocol as bytes (ops 400–402, HS_MAC credentials).

Pure encodings beside :mod:`.codec` and :mod:`.credentials`, as HANDLE.NET and
the IDIS SDKs write them:

* op 400 SESSION_SETUP: ``mode int2 · timeout int4 · identity Str · index int4``
  then, by key-exchange mode, the client's public key (1 and 4) or the handle
  and index of an exchange key (3). HANDLE.NET sizes the 2-byte mode as 4
  bytes, so two zero bytes trail its bodies, requests and answers alike.
* its answer: ``mode int2 · data Str`` (after the request digest): a session key
  encrypted to the client, the server's public key (mode 2) or, from 2.4, the
  cipher code and the server's Diffie-Hellman public key (mode 4).
* op 402 SESSION_EXCHANGEKEY: the session key encrypted to the server (mode 2).
* HS_MAC credentials: what the MAC covers, by the message's version. From 2.7
  the versions, ids and session counter lead the header and body; 2.5 and 2.6
  carry HANDLE.NET's mis-offset buffer, which in effect covers neither ids nor
  counter; before 2.5 the header and body alone.

The MACs themselves are computed in :mod:`.session_crypto`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from registry.wire import blob

from .codec import CodecError, Message, body_reader
from .credentials import Credential

KEY_EXCHANGE_CIPHER_CLIENT = 1
"""The server encrypts a fresh session key to the RSA key the client sends."""
KEY_EXCHANGE_CIPHER_SERVER = 2
"""The server answers its RSA key; the client sends the session key (op 402)."""
KEY_EXCHANGE_CIPHER_HDL = 3
"""The server encrypts a fresh session key to an HS_PUBKEY named by handle and
index (IDIS "cipher HDL": an SM2 key, answered with an SM4 key)."""
KEY_EXCHANGE_DH = 4
"""Diffie-Hellman: both sides derive the key from the exchanged public values."""
KEY_EXCHANGE_MODES = frozenset(
    {
        KEY_EXCHANGE_CIPHER_CLIENT,
        KEY_EXCHANGE_CIPHER_SERVER,
        KEY_EXCHANGE_CIPHER_HDL,
        KEY_EXCHANGE_DH,
    }
)

CIPHER_DES = 1
CIPHER_DESEDE = 2
CIPHER_AES = 3
CIPHER_SM4 = 4
"""IDIS: SM4-CBC, PKCS#5 padding, the session key as its own IV, no IV on the wire."""

NO_IDENTITY_INDEX = -1
"""The index of an anonymous session (HANDLE.NET writes Java's -1)."""
CNRI_TRAILER = b"\x00\x00"
"""What HANDLE.NET leaves after a setup body: its 2-byte mode sized as 4."""
MAX_EXCHANGE_KEY = 4096
"""Largest public key a setup may carry: an 8192-bit RSA or DH key record fits twice."""
MAX_IDENTITY = 2048
"""HANDLE.NET's longest handle."""
MAX_TRAILER = 16
"""Bytes tolerated after a setup body (HANDLE.NET leaves two)."""

MAC_TYPE = b"HS_MAC"
HMAC_SHA256_NAME = b"HMAC-SHA256"
SHA1_NAME = b"SHA1"
SHA1_CODE_NAME = b"\x02"
"""Before 2.6 HANDLE.NET names the MAC's hash by its one-byte code (2: SHA-1)."""


class InvalidSetup(CodecError):
    """A session-setup body that is malformed or asks the impossible: RC 504."""


def _handle_of(reader_value: bytes, what: str) -> bytes:
    if len(reader_value) > MAX_IDENTITY:
        raise InvalidSetup(f"{what} of {len(reader_value)} bytes (at most {MAX_IDENTITY})")
    return reader_value


@dataclass(frozen=True, slots=True)
class SessionSetup:
    """Op 400: how to agree on a session key, for how long, and as whom."""

    mode: int
    timeout: int
    """Seconds; 0 or less: the server's default."""
    identity_handle: bytes = b""
    identity_index: int = NO_IDENTITY_INDEX
    public_key: bytes = b""
    """Modes 1 and 4: the client's HS_PUBKEY record (RSA, or DH_PUB_KEY)."""
    exchange_handle: bytes = b""
    exchange_index: int = 0
    """Mode 3: where the key to encrypt the session key to is published."""
    trailer: bytes = CNRI_TRAILER

    @property
    def anonymous(self) -> bool:
        return not self.identity_handle or self.identity_index < 0

    def to_bytes(self) -> bytes:
        out = (
            struct.pack(">Hi", self.mode, self.timeout)
            + blob(self.identity_handle)
            + struct.pack(">i", self.identity_index)
        )
        if self.mode in (KEY_EXCHANGE_CIPHER_CLIENT, KEY_EXCHANGE_DH):
            out += blob(self.public_key)
        elif self.mode == KEY_EXCHANGE_CIPHER_HDL:
            out += blob(self.exchange_handle) + struct.pack(">i", self.exchange_index)
        return out + self.trailer

    @classmethod
    def from_bytes(cls, body: bytes) -> SessionSetup:
        r = body_reader(body, "session setup")
        try:
            mode = r.u16()
            if mode not in KEY_EXCHANGE_MODES:
                raise InvalidSetup(f"unknown key-exchange mode {mode}")
            timeout = r.i32()
            identity = _handle_of(r.blob(), "identity handle")
            index = r.i32()
            public_key, exchange, exchange_index = b"", b"", 0
            if mode in (KEY_EXCHANGE_CIPHER_CLIENT, KEY_EXCHANGE_DH):
                size = r.u32()
                if size > MAX_EXCHANGE_KEY:
                    raise InvalidSetup(f"a {size}-byte public key (at most {MAX_EXCHANGE_KEY})")
                public_key = r.take(size)
            elif mode == KEY_EXCHANGE_CIPHER_HDL:
                exchange = _handle_of(r.blob(), "exchange-key handle")
                exchange_index = r.i32()
        except InvalidSetup:
            raise
        except CodecError as exc:
            raise InvalidSetup(str(exc)) from None
        trailer = r.take(r.remaining)
        if len(trailer) > MAX_TRAILER:
            raise InvalidSetup(f"{len(trailer)} stray bytes after the session setup")
        return cls(mode, timeout, identity, index, public_key, exchange, exchange_index, trailer)


@dataclass(frozen=True, slots=True)
class SessionSetupAnswer:
    """The body of a successful op-400 answer, after the request digest."""

    mode: int
    data: bytes
    trailer: bytes = CNRI_TRAILER

    def to_bytes(self) -> bytes:
        return struct.pack(">H", self.mode) + blob(self.data) + self.trailer

    @classmethod
    def from_bytes(cls, body: bytes) -> SessionSetupAnswer:
        r = body_reader(body, "session setup answer")
        mode = r.u16()
        data = r.blob()
        return cls(mode, data, r.take(r.remaining))


@dataclass(frozen=True, slots=True)
class ExchangeKey:
    """Op 402: the session key, encrypted to the server's RSA key (mode 2)."""

    encrypted_key: bytes

    def to_bytes(self) -> bytes:
        return blob(self.encrypted_key)

    @classmethod
    def from_bytes(cls, body: bytes) -> ExchangeKey:
        return cls(body_reader(body, "session key exchange").blob())


# --- key records -------------------------------------------------------------------

DH_KEY_TYPE = b"DH_PUB_KEY"


def java_unsigned(number: int) -> bytes:
    """A non-negative integer as Java's ``BigInteger.toByteArray`` writes it: big
    endian, with a leading zero byte when the top bit is set."""
    return number.to_bytes(number.bit_length() // 8 + 1, "big")


@dataclass(frozen=True, slots=True)
class DhPublicKey:
    """A ``DH_PUB_KEY`` record: the public value and the group it lives in."""

    y: int
    p: int
    g: int

    def to_bytes(self) -> bytes:
        return (
            blob(DH_KEY_TYPE)
            + b"\x00\x00"
            + blob(java_unsigned(self.y))
            + blob(java_unsigned(self.p))
            + blob(java_unsigned(self.g))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DhPublicKey:
        r = body_reader(data, "DH public key")
        kind = r.blob()
        if kind != DH_KEY_TYPE:
            raise InvalidSetup(f"a {kind[:40]!r} key where a DH_PUB_KEY belongs")
        r.take(2)  # reserved flags
        y, p, g = (int.from_bytes(r.blob(), "big") for _ in range(3))
        return cls(y, p, g)


def with_cipher(cipher: int, data: bytes) -> bytes:
    """``int4 cipher ‖ data``: a session key (or DH public key) named with its cipher."""
    return struct.pack(">I", cipher) + data


def split_cipher(data: bytes) -> tuple[int, bytes]:
    """The cipher code and what follows it (:func:`with_cipher` undone)."""
    if len(data) < 4:
        raise CodecError("a keyed blob shorter than its cipher code")
    return int.from_bytes(data[:4], "big"), data[4:]


# --- HS_MAC ------------------------------------------------------------------------


def mac_name(version: tuple[int, int]) -> bytes:
    """How HANDLE.NET names the MAC it makes at ``version``."""
    if version >= (2, 7):
        return HMAC_SHA256_NAME
    if version >= (2, 6):
        return SHA1_NAME
    return SHA1_CODE_NAME


def mac_covered(message: Message, counter: int, key: bytes) -> bytes:
    """What an HS_MAC of ``message`` digests, by its version. From 2.7 and before
    2.5 the key is applied by the MAC algorithm named in the credential; at 2.5
    and 2.6 it is already inside (HANDLE.NET's ``key ‖ … ‖ key`` buffer, whose
    int4 fields overwrite one another at offset 4) and the named hash is plain."""
    env = message.envelope
    covered = message.signed_part
    if env.version >= (2, 7):
        suggested = env.suggested
        prefix = bytes([env.major, env.minor])
        if env.version >= (2, 8):
            prefix += bytes(suggested)
        return prefix + struct.pack(">III", env.session_id, env.request_id, counter) + covered
    if env.version < (2, 5):
        return covered
    buffer = bytearray(2 * len(key) + len(covered) + 14)
    buffer[0 : len(key)] = key
    at = len(key)
    buffer[at : at + 2] = bytes([env.major, env.minor])
    # Each int4 lands at the offset the previous write *returned* (its size, 4).
    buffer[at + 2 : at + 6] = struct.pack(">I", env.session_id)
    buffer[4:8] = struct.pack(">I", env.request_id)
    buffer[4:8] = struct.pack(">I", counter)
    buffer[4 : 4 + len(covered)] = covered
    buffer[4 + len(covered) : 4 + len(covered) + len(key)] = key
    return bytes(buffer)


def mac_credential(counter: int, name: bytes, mac: bytes) -> bytes:
    """An HS_MAC credential: the counter where HS_SIGNED has its signer index."""
    return Credential(MAC_TYPE, name, mac, b"", counter).to_bytes()


def is_mac(credential: bytes) -> bool:
    """Whether a message's credential section is an HS_MAC (without judging it)."""
    if not credential:
        return False
    try:
        return Credential.from_bytes(credential).signature_type == MAC_TYPE
    except CodecError:
        return False
