"""Data layouts of the well-known Handle value types the registry writes itself.

Pure byte codecs (RFC 3651 §3.2); the native protocol codec reuses them.
Integers are big-endian, strings are a 4-byte length followed by UTF-8.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

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


class ValueFormatError(ValueError):
    """Value data does not follow the layout of its type."""


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


class _Reader:
    """A cursor over value data; every read is bounds-checked here, once."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueFormatError(f"{self.what} ends early (wanted {n} bytes at {self.pos})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def blob(self) -> bytes:
        return self.take(self.u32())

    def text(self) -> str:
        try:
            return self.blob().decode("utf-8")
        except UnicodeDecodeError:
            raise ValueFormatError(f"{self.what} holds a string that is not UTF-8") from None

    def count(self, item_size: int) -> int:
        """A count whose items (at least ``item_size`` bytes each) must still fit."""
        n = self.u32()
        if n * item_size > len(self.data) - self.pos:
            raise ValueFormatError(f"{self.what} claims {n} items; the data is too short")
        return n


def _blob(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _text(value: str) -> bytes:
    return _blob(value.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class ValueRef:
    """A (handle, index) pair: an HS_VLIST member or a value reference."""

    handle: str
    index: int


def encode_vlist(members: tuple[ValueRef, ...] | list[ValueRef]) -> bytes:
    """``HS_VLIST`` data: a group of identities (RFC 3651 §3.2.2)."""
    return struct.pack(">I", len(members)) + b"".join(
        _text(m.handle) + struct.pack(">I", m.index) for m in members
    )


def decode_vlist(data: bytes) -> tuple[ValueRef, ...]:
    reader = _Reader(data, "HS_VLIST data")
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
    def pack_address(text: str) -> bytes:
        address = ipaddress.ip_address(text)
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
            _blob(self.hash_filter),
            struct.pack(">I", len(self.attributes)),
            *(_text(name) + _text(value) for name, value in self.attributes),
            struct.pack(">I", len(self.servers)),
        ]
        for server in self.servers:
            out.append(struct.pack(">I", server.server_id) + server.address)
            out.append(_blob(server.public_key))
            out.append(struct.pack(">I", len(server.interfaces)))
            out.extend(struct.pack(">BBI", i.type, i.protocol, i.port) for i in server.interfaces)
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> SiteInfo:
        r = _Reader(data, "HS_SITE data")
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
