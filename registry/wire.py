"""The byte layout shared by every Handle encoding (RFC 3652 §2.1): big-endian
integers, strings as a 4-byte length and then the bytes. One cursor does every
read, so no decoder can run past the end of what it was given."""

from __future__ import annotations

import struct

MAX_ARRAY = 1 << 20
"""Largest element count a decoder believes (HANDLE.NET's sanity limit)."""


class WireError(ValueError):
    """Bytes that do not follow the layout they claim to."""


class Reader:
    """A bounds-checked cursor over bytes."""

    __slots__ = ("data", "error", "pos", "what")

    def __init__(
        self, data: bytes, what: str, *, error: type[WireError] = WireError, pos: int = 0
    ) -> None:
        self.data = data
        self.pos = pos
        self.what = what
        self.error = error

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"{self.what} ends early (wanted {n} bytes at {self.pos})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def blob(self) -> bytes:
        return self.take(self.u32())

    def text(self) -> str:
        try:
            return self.blob().decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"{self.what} holds a string that is not UTF-8") from None

    def count(self, item_size: int) -> int:
        """A count whose items (at least ``item_size`` bytes each) must still fit."""
        n = self.u32()
        if n > MAX_ARRAY or n * item_size > len(self.data) - self.pos:
            raise self.error(f"{self.what} claims {n} items; the data is too short")
        return n

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


def blob(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def text(value: str) -> bytes:
    return blob(value.encode("utf-8"))


def ints(values: tuple[int, ...] | list[int]) -> bytes:
    return struct.pack(f">I{len(values)}I", len(values), *values)
