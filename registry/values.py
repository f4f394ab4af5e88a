"""Data layouts of the well-known Handle value types the registry writes itself.

Pure byte codecs (RFC 3651 §3.2); the native protocol codec reuses them.
Integers are big-endian, strings are a 4-byte length followed by UTF-8.
"""

from __future__ import annotations

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
