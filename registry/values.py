"""Data layouts of the well-known Handle value types the registry writes itself.

Pure byte codecs (RFC 3651 §3.2); the native protocol codec reuses them.
Integers are big-endian, strings are a 4-byte length followed by UTF-8.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from .crypto import keys
from .crypto.errors import CryptoError
from .crypto.sm2 import Sm2PublicKey
from .models import HandleValue
from .wire import Reader, WireError, blob, text

HS_ADMIN = "HS_ADMIN"
HS_SECKEY = "HS_SECKEY"

# HS_ADMIN permission bits (RFC 3651 §3.2.1 and HANDLE.NET).
ADD_HANDLE = 0x0001
DELETE_HANDLE = 0x0002
ADD_NA = 0x0004
DELETE_NA = 0x0008
MODIFY_VALUE = 0x0010
REMOVE_VALUE = 0x0020
ADD_VALUE = 0x0040
MODIFY_ADMIN = 0x0080
REMOVE_ADMIN = 0x0100
ADD_ADMIN = 0x0200
READ_VALUE = 0x0400
LIST_HANDLES = 0x0800
ALL_ADMIN_PERMISSIONS = 0x0FFF


class ValueFormatError(WireError):
    """Value data does not follow the layout of its type."""


def encode_value_content(value: HandleValue) -> bytes:
    """A value's encoding after its index and timestamp (RFC 3651 §3.1): TTL type,
    TTL, permissions, type, data and references. The native codec puts index and
    timestamp before it; trusted resolution digests exactly these bytes."""
    refs = b"".join(text(handle) + struct.pack(">I", index) for handle, index in value.references)
    return (
        struct.pack(">BIB", value.ttl_type, value.ttl & 0xFFFFFFFF, value.permissions)
        + text(value.type)
        + blob(value.data)
        + struct.pack(">I", len(value.references))
        + refs
    )


@dataclass(frozen=True, slots=True)
class AdminRef:
    """The data of an ``HS_ADMIN`` value: who administers, with which rights."""

    handle: str
    index: int
    permissions: int = ALL_ADMIN_PERMISSIONS

    def to_bytes(self) -> bytes:
        name = self.handle.encode("utf-8")
        return struct.pack(f">HI{len(name)}sI", self.permissions, len(name), name, self.index)

    @classmethod
    def from_bytes(cls, data: bytes) -> AdminRef:
        if len(data) < 10:
            raise ValueFormatError("HS_ADMIN data shorter than 10 bytes")
        permissions, length = struct.unpack_from(">HI", data)
        end = 6 + length
        if len(data) < end + 4:
            raise ValueFormatError("HS_ADMIN admin handle runs past the data")
        try:
            handle = data[6:end].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueFormatError("HS_ADMIN admin handle is not UTF-8") from None
        (index,) = struct.unpack_from(">I", data, end)
        # Anything after the index is the legacy 4-byte-permissions tail: ignored.
        return cls(handle=handle, index=index, permissions=permissions)


HS_VLIST = "HS_VLIST"
HS_SITE = "HS_SITE"
HS_SITE_PREFIX = "HS_SITE.PREFIX"
HS_PUBKEY = "HS_PUBKEY"
SITE_TYPES = frozenset({"HS_SITE", "HS_SITE.6", "HS_SITE.PREFIX", "HS_NA_DELEGATE"})


@dataclass(frozen=True, slots=True)
class ValueRef:
    """A (handle, index) pair: an HS_VLIST member or a value reference."""

    handle: str
    index: int


def encode_vlist(members: tuple[ValueRef, ...] | list[ValueRef]) -> bytes:
    """``HS_VLIST`` data: a group of identities (RFC 3651 §3.2.2)."""
    return struct.pack(">I", len(members)) + b"".join(
        text(m.handle) + struct.pack(">I", m.index) for m in members
    )


def decode_vlist(data: bytes) -> tuple[ValueRef, ...]:
    reader = Reader(data, "HS_VLIST data", error=ValueFormatError)
    return tuple(ValueRef(reader.text(), reader.u32()) for _ in range(reader.count(8)))


# HS_SITE interface types and protocols.
INTERFACE_ADMIN = 1
INTERFACE_QUERY = 2
INTERFACE_BOTH = 3
PROTOCOL_UDP = 0
PROTOCOL_TCP = 1
PROTOCOL_HTTP = 2
PROTOCOL_HTTPS = 3
PROTOCOL_NAMES = {
    PROTOCOL_UDP: "UDP",
    PROTOCOL_TCP: "TCP",
    PROTOCOL_HTTP: "HTTP",
    PROTOCOL_HTTPS: "HTTPS",
}


@dataclass(frozen=True, slots=True)
class Interface:
    type: int
    protocol: int
    port: int


@dataclass(frozen=True, slots=True)
class SiteServer:
    server_id: int
    address: bytes
    """16 bytes: an IPv6 address, or IPv4 right-aligned in zeros (``::a.b.c.d``)."""
    public_key: bytes
    interfaces: tuple[Interface, ...]

    @staticmethod
    def pack_address(written: str) -> bytes:
        address = ipaddress.ip_address(written)
        if address.version == 4:
            return bytes(12) + address.packed
        return address.packed

    @property
    def address_text(self) -> str:
        if self.address[:12] == bytes(12) and any(self.address[12:]):
            return str(ipaddress.IPv4Address(self.address[12:]))
        return str(ipaddress.IPv6Address(self.address))


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """The ``HS_SITE`` record (RFC 3651 §3.2.3 with the HANDLE.NET additions)."""

    servers: tuple[SiteServer, ...]
    serial: int = 1
    protocol_version: tuple[int, int] = (2, 10)
    primary: bool = True
    multi_primary: bool = False
    hash_option: int = 2
    hash_filter: bytes = b""
    attributes: tuple[tuple[str, str], ...] = ()
    data_format_version: int = 1

    def to_bytes(self) -> bytes:
        mask = (0x80 if self.primary else 0) | (0x40 if self.multi_primary else 0)
        out = [
            struct.pack(
                ">HBBHBB",
                self.data_format_version,
                *self.protocol_version,
                self.serial,
                mask,
                self.hash_option,
            ),
            blob(self.hash_filter),
            struct.pack(">I", len(self.attributes)),
            *(text(name) + text(value) for name, value in self.attributes),
            struct.pack(">I", len(self.servers)),
        ]
        for server in self.servers:
            out.append(struct.pack(">I", server.server_id) + server.address)
            out.append(blob(server.public_key))
            out.append(struct.pack(">I", len(server.interfaces)))
            out.extend(struct.pack(">BBI", i.type, i.protocol, i.port) for i in server.interfaces)
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> SiteInfo:
        r = Reader(data, "HS_SITE data", error=ValueFormatError)
        version, major, minor, serial, mask, hash_option = struct.unpack(">HBBHBB", r.take(8))
        hash_filter = r.blob()
        attributes = tuple((r.text(), r.text()) for _ in range(r.count(8)))
        servers = []
        for _ in range(r.count(28)):
            server_id = r.u32()
            address = r.take(16)
            key = r.blob()
            interfaces = tuple(Interface(r.u8(), r.u8(), r.u32()) for _ in range(r.count(6)))
            servers.append(SiteServer(server_id, address, key, interfaces))
        return cls(
            servers=tuple(servers),
            serial=serial,
            protocol_version=(major, minor),
            primary=bool(mask & 0x80),
            multi_primary=bool(mask & 0x40),
            hash_option=hash_option,
            hash_filter=hash_filter,
            attributes=attributes,
            data_format_version=version,
        )


# --- HS_PUBKEY -------------------------------------------------------------------

RSA_KEY_TYPE = "RSA_PUB_KEY"
DSA_KEY_TYPE = "DSA_PUB_KEY"
SM2_KEY_TYPE = "SM2_PUB_KEY"
"""IDIS's key type: after the flags, one length-prefixed SubjectPublicKeyInfo (PEM
text as the IDIS SDK writes it, or DER as its reader also takes)."""
IDIS_PEM_WIDTH = 76
"""The IDIS SDK writes PEM as Java's MIME base64 does: 76 columns, CRLF."""
_PEM_START = b"-----BEGIN"

PublishedKey = rsa.RSAPublicKey | dsa.DSAPublicKey | Sm2PublicKey
"""The kinds of key an identity publishes in HS_PUBKEY that the node checks proofs with."""


def _unsigned(number: int) -> bytes:
    """Two's-complement big-endian with a sign byte where needed, as Java writes it."""
    return number.to_bytes(number.bit_length() // 8 + 1, "big")


def encode_public_key(key: PublishedKey) -> bytes:
    """The binary ``HS_PUBKEY`` record: HANDLE.NET's for RSA and DSA; for SM2 the one
    the IDIS SDK writes (``SM2_PUB_KEY``, flags, the PEM text with CRLF lines of 76)."""
    if isinstance(key, Sm2PublicKey):
        pem = key.to_pem(width=IDIS_PEM_WIDTH, newline=b"\r\n")
        return text(SM2_KEY_TYPE) + b"\x00\x00" + blob(pem)
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return (
            text(RSA_KEY_TYPE)
            + b"\x00\x00"
            + blob(_unsigned(numbers.e))
            + blob(_unsigned(numbers.n))
        )
    dnum = key.public_numbers()
    params = dnum.parameter_numbers
    return (
        text(DSA_KEY_TYPE)
        + b"\x00\x00"
        + blob(_unsigned(params.q))
        + blob(_unsigned(params.p))
        + blob(_unsigned(params.g))
        + blob(_unsigned(dnum.y))
    )


def decode_public_key(data: bytes) -> PublishedKey:
    """An ``HS_PUBKEY`` value: HANDLE.NET's binary record (RSA, DSA), IDIS's
    ``SM2_PUB_KEY`` record holding PEM or DER, or bare PEM text as IDIS SDKs also
    store it (any of the three kinds). Reads only: the stored bytes stay as they are."""
    if data.lstrip().startswith(_PEM_START):
        try:
            key = keys.load_public_key(data)
        except CryptoError as exc:
            raise ValueFormatError(f"HS_PUBKEY PEM is not a public key: {exc}") from None
        if not isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey | Sm2PublicKey):
            raise ValueFormatError(f"unsupported public key type {keys.kind(key)}")
        return key
    r = Reader(data, "HS_PUBKEY data", error=ValueFormatError)
    kind = r.text()
    r.take(2)  # reserved flags
    try:
        if kind == RSA_KEY_TYPE:
            exponent = int.from_bytes(r.blob(), "big")
            modulus = int.from_bytes(r.blob(), "big")
            return rsa.RSAPublicNumbers(exponent, modulus).public_key()
        if kind == DSA_KEY_TYPE:
            q, p, g, y = (int.from_bytes(r.blob(), "big") for _ in range(4))
            return dsa.DSAPublicNumbers(y, dsa.DSAParameterNumbers(p, q, g)).public_key()
        if kind == SM2_KEY_TYPE:
            return Sm2PublicKey.load(r.blob())
    except ValueError as exc:  # CryptoError is one
        raise ValueFormatError(f"HS_PUBKEY {kind} key is invalid: {exc}") from None
    raise ValueFormatError(f"unsupported HS_PUBKEY key type {kind!r}")
