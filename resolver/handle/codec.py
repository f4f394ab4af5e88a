"""The Handle native protocol (RFC 3652, as HANDLE.NET 9 and the IDIS SDKs speak it).

Pure functions and immutable records: bytes in, dataclasses out, and back.
No sockets, clocks or globals here — the servers, the client, the mock
top-level node and the load tests all share this one codec.

A message is ``envelope (20) | header (24) | body | credential length (4) |
credential``. Each body type is a small class with ``to_bytes`` and
``from_bytes`` side by side; those of authentication (challenges, proofs,
credentials) are in :mod:`.credentials`.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field, replace

from registry.models import HandleValue
from registry.values import encode_value_content
from registry.wire import Reader, WireError, blob, ints

# --- versions, operations, flags ----------------------------------------------

OUR_VERSION = (2, 11)
OLDEST_VERSION = (2, 1)

OC_RESOLUTION = 1
OC_GET_SITE_INFO = 2
OC_CREATE_HANDLE = 100
OC_DELETE_HANDLE = 101
OC_ADD_VALUE = 102
OC_REMOVE_VALUE = 103
OC_MODIFY_VALUE = 104
OC_LIST_HANDLES = 105
OC_CHALLENGE_RESPONSE = 200
OC_VERIFY_CHALLENGE = 201
OC_HOME_NA = 300
OC_UNHOME_NA = 301
OC_LIST_HOMED_NAS = 302
OC_SESSION_SETUP = 400
OC_SESSION_TERMINATE = 401
OC_SESSION_EXCHANGEKEY = 402
OC_LOGIN_ID_SYSTEM = 2001
"""IDIS: log the connection in as an identity (CAICT and teleinfo SDKs)."""

ADMIN_OPCODES = frozenset(
    {
        OC_CREATE_HANDLE,
        OC_DELETE_HANDLE,
        OC_ADD_VALUE,
        OC_REMOVE_VALUE,
        OC_MODIFY_VALUE,
        OC_LIST_HANDLES,
        OC_HOME_NA,
        OC_UNHOME_NA,
        OC_LIST_HOMED_NAS,
    }
)

FLAG_AUTH = 0x80000000
FLAG_CERT = 0x40000000
FLAG_ENCR = 0x20000000
FLAG_RECU = 0x10000000
FLAG_CACR = 0x08000000
FLAG_CONT = 0x04000000
FLAG_KPAL = 0x02000000
FLAG_PUBL = 0x01000000
FLAG_RRDG = 0x00800000
FLAG_OVRW = 0x00400000
FLAG_MINT = 0x00200000
FLAG_DNRF = 0x00100000
ECHOED_FLAGS = FLAG_CERT | FLAG_CACR | FLAG_AUTH | FLAG_ENCR | FLAG_PUBL | FLAG_DNRF
"""What a response copies from its request (HANDLE.NET ``takeValuesFrom``)."""

ENVELOPE_SIZE = 20
HEADER_SIZE = 24
UDP_PACKET = 512
UDP_PAYLOAD = UDP_PACKET - ENVELOPE_SIZE
MAX_MESSAGE = 262_144
"""Largest message after the envelope that a peer accepts (HANDLE.NET)."""
NONCE_SIZE = 16

_ENVELOPE = struct.Struct(">BBBBIIII")
_HEADER = struct.Struct(">IIIHBBII")
_TC = 0x20
_EC = 0x40
_CP = 0x80


class CodecError(WireError):
    """A message that cannot be read: answered with RC 4 (protocol error)."""


# --- envelope and header ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    major: int = OUR_VERSION[0]
    minor: int = OUR_VERSION[1]
    suggested_major: int = 0
    suggested_minor: int = 0
    """0.0 means "the same as the message version" (older peers write nothing)."""
    session_id: int = 0
    request_id: int = 0
    sequence: int = 0
    length: int = 0
    truncated: bool = False
    encrypted: bool = False
    compressed: bool = False

    @property
    def version(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def suggested(self) -> tuple[int, int]:
        """The highest version the sender speaks."""
        if self.suggested_major == 0:
            return self.version
        return (self.suggested_major, self.suggested_minor)

    def to_bytes(self, length: int | None = None) -> bytes:
        """Encoded; with ``length``, as if it were the envelope's."""
        flags = (
            (_CP if self.compressed else 0)
            | (_EC if self.encrypted else 0)
            | (_TC if self.truncated else 0)
            | (self.suggested_major & 0x1F)
        )
        return _ENVELOPE.pack(
            self.major,
            self.minor,
            flags,
            self.suggested_minor,
            self.session_id,
            self.request_id,
            self.sequence,
            self.length if length is None else length,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        if len(data) < ENVELOPE_SIZE:
            raise CodecError(f"envelope needs {ENVELOPE_SIZE} bytes, got {len(data)}")
        major, minor, flags, smin, session, request, sequence, length = _ENVELOPE.unpack_from(data)
        return cls(
            major,
            minor,
            flags & 0x1F,
            smin,
            session,
            request,
            sequence,
            length,
            truncated=bool(flags & _TC),
            encrypted=bool(flags & _EC),
            compressed=bool(flags & _CP),
        )


@dataclass(frozen=True, slots=True)
class Header:
    opcode: int
    response_code: int = 0
    flags: int = 0
    site_serial: int = 0xFFFF
    recursion: int = 0
    expiration: int = 0
    body_length: int = 0
    reserved: int = 0
    """Kept as received: request digests cover the header exactly as sent."""

    def to_bytes(self, body_length: int | None = None) -> bytes:
        """Encoded; with ``body_length``, as if it were the header's (what a
        message writes, without copying the header to say so)."""
        return _HEADER.pack(
            self.opcode,
            self.response_code,
            self.flags,
            self.site_serial,
            self.recursion,
            self.reserved,
            self.expiration,
            self.body_length if body_length is None else body_length,
        )

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> Header:
        if len(data) - offset < HEADER_SIZE:
            raise CodecError("message shorter than its 24-byte header")
        op, rc, flags, serial, recursion, reserved, expiration, body_length = _HEADER.unpack_from(
            data, offset
        )
        return cls(op, rc, flags, serial, recursion, expiration, body_length, reserved)


@dataclass(frozen=True, slots=True)
class Message:
    """A whole message; ``body`` and ``credential`` stay raw bytes."""

    envelope: Envelope
    header: Header
    body: bytes = b""
    credential: bytes = b""

    @property
    def opcode(self) -> int:
        return self.header.opcode

    @property
    def is_response(self) -> bool:
        return self.header.response_code != 0

    def flag(self, mask: int) -> bool:
        return bool(self.header.flags & mask)

    @property
    def signed_part(self) -> bytes:
        """Header and body: what request digests and signatures cover."""
        return self.header.to_bytes(len(self.body)) + self.body

    def to_bytes(self) -> bytes:
        rest = self.header.to_bytes(len(self.body)) + self.body + blob(self.credential)
        return self.envelope.to_bytes(len(rest)) + rest

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        """Decode one message (the envelope's length is checked, trailing bytes are not
        part of it). A message that ends right after its body has no credential."""
        envelope = Envelope.from_bytes(data)
        if envelope.length > MAX_MESSAGE:
            raise CodecError(f"message length {envelope.length} is over {MAX_MESSAGE}")
        end = ENVELOPE_SIZE + envelope.length
        if len(data) < end:
            raise CodecError(
                f"message claims {envelope.length} bytes, has {len(data) - ENVELOPE_SIZE}"
            )
        header = Header.from_bytes(data, ENVELOPE_SIZE)
        body_start = ENVELOPE_SIZE + HEADER_SIZE
        body_end = body_start + header.body_length
        if body_end > end:
            raise CodecError(f"body length {header.body_length} runs past the message")
        credential = b""
        if end - body_end >= 4:
            reader = Reader(data[:end], "credential", error=CodecError, pos=body_end)
            credential = reader.blob()
        return cls(envelope, header, data[body_start:body_end], credential)


def split_envelope(data: bytes) -> tuple[Envelope, bytes]:
    envelope = Envelope.from_bytes(data)
    return envelope, data[ENVELOPE_SIZE:]


# --- handle values --------------------------------------------------------------


def encode_value(value: HandleValue) -> bytes:
    return struct.pack(">II", value.index, value.timestamp & 0xFFFFFFFF) + encode_value_content(
        value
    )


def decode_value(reader: Reader) -> HandleValue:
    index, timestamp, ttl_type, ttl, permissions = struct.unpack(">IIBIB", reader.take(14))
    vtype = reader.text()
    data = reader.blob()
    references = tuple((reader.text(), reader.u32()) for _ in range(reader.count(8)))
    return HandleValue(
        index=index,
        type=vtype,
        data=data,
        ttl_type=ttl_type,
        ttl=ttl,
        timestamp=timestamp,
        permissions=permissions,
        references=references,
    )


def encode_values(values: tuple[HandleValue, ...] | list[HandleValue]) -> bytes:
    return struct.pack(">I", len(values)) + b"".join(encode_value(v) for v in values)


def decode_values(reader: Reader) -> tuple[HandleValue, ...]:
    # The smallest value is 26 bytes: 14 fixed, empty type and data (4 + 4), no references (4).
    return tuple(decode_value(reader) for _ in range(reader.count(26)))


# --- request digests ------------------------------------------------------------

DIGEST_MD5 = 1
DIGEST_SHA1 = 2
DIGEST_SHA256 = 3
_DIGESTS = {DIGEST_MD5: "md5", DIGEST_SHA1: "sha1", DIGEST_SHA256: "sha256"}
_DIGEST_SIZES = {DIGEST_MD5: 16, DIGEST_SHA1: 20, DIGEST_SHA256: 32}


RESPONSE_DIGEST_AT = ENVELOPE_SIZE + HEADER_SIZE + 1
"""Where the request digest sits in a response that carries one (RD): first in
its body, after the digest's code byte."""


def digest_code_for(version: tuple[int, int]) -> int:
    """SHA-256 from 2.7, SHA-1 before."""
    return DIGEST_SHA256 if version >= (2, 7) else DIGEST_SHA1


def request_digest(request: Message, version: tuple[int, int]) -> bytes:
    """The digest a response starts with when the request set RD: code byte + hash."""
    code = digest_code_for(version)
    return bytes([code]) + hashlib.new(_DIGESTS[code], request.signed_part).digest()


def digest_size(code: int) -> int:
    if code not in _DIGEST_SIZES:
        raise CodecError(f"unknown digest code {code}")
    return _DIGEST_SIZES[code]


def read_digest(reader: Reader) -> tuple[int, bytes]:
    code = reader.u8()
    if code not in _DIGEST_SIZES:
        raise CodecError(f"unknown digest code {code}")
    return code, reader.take(_DIGEST_SIZES[code])


# --- encoded messages, read and patched in place ----------------------------------
# For the paths that must not decode (framing, the answer caches, load clients).
# Each reader takes bytes holding at least the fields it reads.

_BODY_AT = ENVELOPE_SIZE + HEADER_SIZE
_NO_CREDENTIAL = (b"", b"\x00\x00\x00\x00")
_RESOLUTION_REQUEST = b"\x00\x00\x00\x01\x00\x00\x00\x00"
"""Opcode 1, response code 0: the first eight bytes of a resolution request's header."""
_CERT_BYTE = FLAG_CERT >> 24
"""FLAG_CERT within the first byte of the header's flags."""


def message_length(data: bytes | bytearray) -> int:
    """The envelope's length: how many bytes of the message follow the envelope."""
    return int.from_bytes(data[16:20], "big")


def is_encrypted(data: bytes | bytearray) -> bool:
    """Whether the envelope says what follows it is encrypted under a session key."""
    return len(data) > 2 and bool(data[2] & _EC)


def request_id_of(data: bytes | bytearray) -> int:
    return int.from_bytes(data[8:12], "big")


def response_code_of(data: bytes | bytearray) -> int:
    return int.from_bytes(data[24:28], "big")


def with_request_id(data: bytes, request_id: int) -> bytes:
    """The message (or fragment) in ``data`` under another request id."""
    return data[:8] + request_id.to_bytes(4, "big") + data[12:]


def is_fragment(datagram: bytes) -> bool:
    """Whether a datagram is one of several that make up a longer message: its
    length is the whole message's, its sequence number which part it is."""
    length = int.from_bytes(datagram[16:20], "big")
    sequence = int.from_bytes(datagram[12:16], "big")
    return bool(
        (sequence or length > len(datagram) - ENVELOPE_SIZE)
        and UDP_PAYLOAD < length <= MAX_MESSAGE
        and sequence < -(-length // UDP_PAYLOAD)
    )


def resolution_shape(data: bytes, lead: bytes) -> bytes | None:
    """What decides the answer to the resolution request in ``data``, after
    ``lead``: its versions, header (but the expiration) and body — not its ids,
    expiration or credential. None unless ``data`` is exactly one whole
    resolution request, without credential or certification (CT)."""
    if len(data) < _BODY_AT + 4 or data[20:28] != _RESOLUTION_REQUEST or data[28] & _CERT_BYTE:
        return None
    end = _BODY_AT + int.from_bytes(data[40:44], "big")
    size = len(data)
    if (
        size < end
        or int.from_bytes(data[16:20], "big") != size - ENVELOPE_SIZE
        or data[end : end + 4] not in _NO_CREDENTIAL
        or size > end + 4
    ):
        return None
    return lead + data[0:4] + data[20:36] + data[_BODY_AT:end]


def readdress(
    parts: list[bytes],
    request: bytes,
    expiration: int,
    digest_at: int | None = None,
    digest_code: int = 0,
) -> list[bytes]:
    """An encoded response (its datagrams, or one message) made the answer to
    the encoded ``request``: its session and request ids in every part and, in
    the first, ``expiration`` and — at ``digest_at`` — the request's digest."""
    ids = request[4:12]
    expires = struct.pack(">I", expiration & 0xFFFFFFFF)
    digest = None
    if digest_at is not None:
        end = _BODY_AT + int.from_bytes(request[40:44], "big")
        name = "sha256" if digest_code == DIGEST_SHA256 else "sha1"
        digest = hashlib.new(name, request[ENVELOPE_SIZE:end]).digest()
    out = []
    for n, part in enumerate(parts):
        patched = bytearray(part)
        patched[4:12] = ids
        if n == 0:
            patched[36:40] = expires
            if digest is not None:
                assert digest_at is not None
                patched[digest_at : digest_at + len(digest)] = digest
        out.append(bytes(patched))
    return out


# --- bodies ---------------------------------------------------------------------


def body_reader(body: bytes, what: str) -> Reader:
    """A reader over a body (or a record inside one) whose faults are protocol errors."""
    return Reader(body, what, error=CodecError)


@dataclass(frozen=True, slots=True)
class ResolutionRequest:
    """Op 1. Trailing bytes (the teleinfo SDK appends an auth field) are ignored."""

    handle: bytes
    indexes: tuple[int, ...] = ()
    types: tuple[bytes, ...] = ()

    def to_bytes(self) -> bytes:
        return (
            blob(self.handle)
            + ints(list(self.indexes))
            + struct.pack(">I", len(self.types))
            + b"".join(blob(t) for t in self.types)
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> ResolutionRequest:
        r = body_reader(body, "resolution request")
        handle = r.blob()
        indexes = tuple(r.u32() for _ in range(r.count(4)))
        types = tuple(r.blob() for _ in range(r.count(4)))
        return cls(handle, indexes, types)


@dataclass(frozen=True, slots=True)
class HandleValues:
    """A handle and values: a resolution response; create, add and modify requests;
    a referral's handle and its HS_SITE values."""

    handle: bytes
    values: tuple[HandleValue, ...] = ()

    def to_bytes(self) -> bytes:
        return blob(self.handle) + encode_values(list(self.values))

    @classmethod
    def from_bytes(cls, body: bytes, *, values_optional: bool = False) -> HandleValues:
        r = body_reader(body, "handle and values")
        handle = r.blob()
        if values_optional and r.remaining < 4:
            return cls(handle)
        return cls(handle, decode_values(r))


@dataclass(frozen=True, slots=True)
class HandleOnly:
    """Delete (101), home/unhome (300/301), get site info (2), list handles (105)."""

    handle: bytes

    def to_bytes(self) -> bytes:
        return blob(self.handle)

    @classmethod
    def from_bytes(cls, body: bytes) -> HandleOnly:
        return cls(body_reader(body, "handle").blob())


@dataclass(frozen=True, slots=True)
class RemoveValues:
    """Op 103: a handle and the indexes to remove."""

    handle: bytes
    indexes: tuple[int, ...]

    def to_bytes(self) -> bytes:
        return blob(self.handle) + ints(list(self.indexes))

    @classmethod
    def from_bytes(cls, body: bytes) -> RemoveValues:
        r = body_reader(body, "remove values")
        handle = r.blob()
        return cls(handle, tuple(r.u32() for _ in range(r.count(4))))


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """The body of an error response: a UTF-8 message (possibly empty)."""

    message: bytes = b""

    def to_bytes(self) -> bytes:
        return blob(self.message)

    @classmethod
    def from_bytes(cls, body: bytes) -> ErrorMessage:
        if len(body) < 4:  # pre-2.1 peers may send nothing
            return cls()
        return cls(body_reader(body, "error message").blob())


@dataclass(frozen=True, slots=True)
class HandleList:
    """List responses (105, 302): a count and the names."""

    handles: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        return struct.pack(">I", len(self.handles)) + b"".join(blob(h) for h in self.handles)

    @classmethod
    def from_bytes(cls, body: bytes) -> HandleList:
        r = body_reader(body, "handle list")
        return cls(tuple(r.blob() for _ in range(r.count(4))))


# --- UDP ------------------------------------------------------------------------


def fragments(message: bytes) -> list[bytes]:
    """A message as UDP datagrams: every fragment carries the envelope with its
    fragment number; the length stays the whole message's (HANDLE.NET sets no TC)."""
    if len(message) <= UDP_PACKET:
        return [message]
    envelope, payload = split_envelope(message)
    return [
        replace(envelope, sequence=n).to_bytes() + payload[start : start + UDP_PAYLOAD]
        for n, start in enumerate(range(0, len(payload), UDP_PAYLOAD))
    ]


@dataclass
class Reassembly:
    """Datagrams of one multi-packet message, until all have arrived."""

    envelope: Envelope
    parts: dict[int, bytes] = field(default_factory=dict)

    @property
    def expected(self) -> int:
        return max(1, math.ceil(self.envelope.length / UDP_PAYLOAD))

    def add(self, sequence: int, payload: bytes) -> bytes | None:
        """Add a fragment; the whole message once complete."""
        if sequence >= self.expected:
            raise CodecError(f"fragment {sequence} of a {self.expected}-fragment message")
        if len(payload) > UDP_PAYLOAD:
            raise CodecError(f"a {len(payload)}-byte fragment (at most {UDP_PAYLOAD})")
        self.parts[sequence] = payload
        if len(self.parts) < self.expected:
            return None
        whole = b"".join(self.parts[i] for i in range(self.expected))
        if len(whole) < self.envelope.length:
            raise CodecError("fragments shorter than the message they make up")
        return (
            replace(self.envelope, sequence=0, truncated=False).to_bytes()
            + whole[: self.envelope.length]
        )

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts.values())
