"""Just enough DER and PEM for keys, signatures and ciphertexts (pure, no I/O).

Strict on input — definite minimal lengths, minimal integers, no trailing bytes —
so that one key or signature has exactly one encoding we accept. The writers
produce the same canonical form.
"""

from __future__ import annotations

import base64
import binascii
import re

from .errors import CryptoError

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
CONTEXT_0 = 0xA0
CONTEXT_1 = 0xA1


class DerError(CryptoError):
    """Bytes that are not the DER structure expected."""


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def integer(number: int) -> bytes:
    if number < 0:
        raise ValueError("only non-negative integers are written")
    return tlv(INTEGER, number.to_bytes(number.bit_length() // 8 + 1, "big"))


def octet_string(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def bit_string(data: bytes) -> bytes:
    return tlv(BIT_STRING, b"\x00" + data)


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(out))


def explicit(number: int, content: bytes) -> bytes:
    return tlv(0xA0 | number, content)


class DerReader:
    """Reads the elements of one DER value's content, in order."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.offset = 0
        self.what = what

    def _fail(self, reason: str) -> DerError:
        return DerError(f"{self.what}: {reason}")

    @property
    def at_end(self) -> bool:
        return self.offset >= len(self.data)

    def peek(self) -> int | None:
        return None if self.at_end else self.data[self.offset]

    def element(self, tag: int) -> bytes:
        """The content of the next element, which must bear ``tag``."""
        data, at = self.data, self.offset
        if at >= len(data):
            raise self._fail(f"ends where tag 0x{tag:02x} was expected")
        if data[at] != tag:
            raise self._fail(f"tag 0x{data[at]:02x} where 0x{tag:02x} was expected")
        if at + 1 >= len(data):
            raise self._fail("truncated length")
        first = data[at + 1]
        at += 2
        if first < 0x80:
            size = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4 or at + count > len(data):
                raise self._fail("bad length")
            size = int.from_bytes(data[at : at + count], "big")
            if size < 0x80 or data[at] == 0:
                raise self._fail("length not in its shortest form")
            at += count
        if at + size > len(data):
            raise self._fail("truncated")
        self.offset = at + size
        return data[at : at + size]

    def sequence(self, what: str | None = None) -> DerReader:
        return DerReader(self.element(SEQUENCE), what or self.what)

    def integer(self) -> int:
        content = self.element(INTEGER)
        if not content:
            raise self._fail("empty integer")
        if len(content) > 1 and (
            (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
        ):
            raise self._fail("integer not in its shortest form")
        if content[0] >= 0x80:
            raise self._fail("negative integer")
        return int.from_bytes(content, "big")

    def octet_string(self) -> bytes:
        return self.element(OCTET_STRING)

    def bit_string(self) -> bytes:
        content = self.element(BIT_STRING)
        if not content or content[0] != 0:
            raise self._fail("bit string with unused bits")
        return content[1:]

    def oid(self) -> str:
        content = self.element(OBJECT_IDENTIFIER)
        if not content or content[-1] & 0x80:
            raise self._fail("malformed object identifier")
        arcs: list[int] = []
        value = 0
        starting = True
        for byte in content:
            if starting and byte == 0x80:
                raise self._fail("object identifier arc not in its shortest form")
            value = (value << 7) | (byte & 0x7F)
            starting = not byte & 0x80
            if starting:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])

    def optional(self, tag: int) -> bytes | None:
        """The next element's content if it bears ``tag`` (an OPTIONAL field)."""
        return self.element(tag) if self.peek() == tag else None

    def end(self) -> None:
        if not self.at_end:
            raise self._fail(f"{len(self.data) - self.offset} bytes after the end")


def read_one(data: bytes, tag: int, what: str) -> bytes:
    """The content of the single element ``data`` holds, nothing after it."""
    reader = DerReader(data, what)
    content = reader.element(tag)
    reader.end()
    return content


# --- PEM ---------------------------------------------------------------------------

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL)
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\s]*")


def is_pem(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN ")


def pem_decode(data: bytes) -> tuple[str, bytes]:
    """The label and DER of the first PEM block in ``data`` (text around it ignored,
    as OpenSSL does). Headers (``Proc-Type``, encrypted PEM) are refused."""
    match = _PEM.search(data)
    if match is None:
        if is_pem(data):
            raise DerError("PEM text is truncated: no matching END line")
        raise DerError("not PEM text")
    label, body, end_label = match.groups()
    if label != end_label:
        raise DerError(f"PEM BEGIN {label.decode()} ends with END {end_label.decode()}")
    if b":" in body or not _BASE64.fullmatch(body):
        raise DerError("PEM body is not plain base64 (encrypted PEM is not supported)")
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise DerError("PEM body is not valid base64") from None
    if not der:
        raise DerError("PEM body is empty")
    return label.decode("ascii"), der


def pem_encode(label: str, der: bytes, *, width: int = 64, newline: bytes = b"\n") -> bytes:
    """PEM text: OpenSSL writes 64-column lines with LF; the IDIS SDK 76 and CRLF."""
    body = base64.b64encode(der)
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    head = f"-----BEGIN {label}-----".encode("ascii")
    tail = f"-----END {label}-----".encode("ascii")
    return newline.join([head, *lines, tail]) + newline
