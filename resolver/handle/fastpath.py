"""The native fast path: anonymous resolutions answered from encoded answers.

The whole response to an anonymous resolution is encoded once, kept in the
engine's answer cache as a :class:`Template` under the request's *shape* (what
decides the answer: versions, opcode, flags, recursion count and body), and
made each later request's own by patching in its request id, session id,
expiration and request digest — no decode, no encode.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from metrics.tally import NO_PREFIX

from .. import codes as rc
from ..cache import AnswerCache
from . import codec as c

FAST_CACHE_LIMIT = 100_000
"""Shapes remembered; beyond, the map starts again (a forgotten shape costs a miss)."""

# Byte offsets in a message (envelope 20, header 24).
_SESSION = slice(4, 8)
_REQUEST_ID = slice(8, 12)
_EXPIRATION = slice(36, 40)
_HEADER_FLAGS = slice(28, 32)
_BODY = 44


@dataclass
class Template:
    """A cached response (one datagram or more), to be patched per request."""

    parts: list[bytes]
    code: int = rc.RC_SUCCESS
    digest_at: int | None = None
    """Offset of the request digest in the first part (RD requests), if any."""
    digest_code: int = 0
    outcome: str = "found"
    prefix: str = NO_PREFIX
    """How the answer counts (metrics.tally): outcome, and the enterprise's prefix."""


def template_of(
    message: c.Message, request: c.Message, version: tuple[int, int], prefix: str, *, udp: bool
) -> Template:
    """``message``, the answer to ``request``, as a template counted for ``prefix``."""
    encoded = message.to_bytes()
    parts = c.fragments(encoded) if udp else [encoded]
    code = message.header.response_code
    digest_at, digest_code = None, 0
    if request.flag(c.FLAG_RRDG):
        digest_at, digest_code = _BODY + 1, c.digest_code_for(version)
    return Template(parts, code, digest_at, digest_code, rc.outcome_of(code), prefix)


class FastPath:
    """Which cached template answers a request: request shape → name key,
    learned on the slow path, then the engine's answer cache."""

    def __init__(self, cache: AnswerCache) -> None:
        self.cache = cache
        self.shapes: dict[bytes, str] = {}

    def lookup(self, data: bytes, udp: bool) -> Template | None:
        """The template answering ``data``; None on a miss."""
        if len(data) < _BODY + 4:
            return None
        found = shape(data, udp)
        if found is None:
            return None
        key = self.shapes.get(found)
        if key is None:
            return None
        template: Template | None = self.cache.get(key, found)
        return template

    def learn(self, request_shape: bytes, key: str) -> None:
        """Requests of this shape are answered from name ``key``'s cache entries."""
        if len(self.shapes) >= FAST_CACHE_LIMIT:
            self.shapes.clear()
        self.shapes[request_shape] = key


def shape(data: bytes, udp: bool) -> bytes | None:
    """What decides an anonymous resolution's answer: versions, opcode, flags,
    recursion and the body — not the ids, the expiration or the credential."""
    if data[20:24] != b"\x00\x00\x00\x01" or data[24:28] != b"\x00\x00\x00\x00":
        return None  # not a resolution request
    flags = int.from_bytes(data[_HEADER_FLAGS], "big")
    if flags & c.FLAG_CERT:
        return None
    body_length = int.from_bytes(data[40:44], "big")
    end = _BODY + body_length
    if (
        len(data) < end
        or int.from_bytes(data[16:20], "big") != len(data) - c.ENVELOPE_SIZE
        or data[end : end + 4] not in (b"", b"\x00\x00\x00\x00")
        or len(data) > end + 4
    ):
        return None  # truncated, a credential, or trailing bytes: take the full path
    return (b"U" if udp else b"T") + data[0:4] + data[20:36] + data[_BODY:end]


def patch(template: Template, request: bytes, expiration: int) -> list[bytes]:
    """The cached answer, made this request's: ids, expiration, request digest."""
    ids = request[_SESSION] + request[_REQUEST_ID]
    expires = struct.pack(">I", expiration & 0xFFFFFFFF)
    digest = None
    if template.digest_at is not None:
        body_length = int.from_bytes(request[40:44], "big")
        name = "sha256" if template.digest_code == c.DIGEST_SHA256 else "sha1"
        digest = hashlib.new(name, request[20 : _BODY + body_length]).digest()
    out = []
    for n, part in enumerate(template.parts):
        patched = bytearray(part)
        patched[4:12] = ids
        if n == 0:
            patched[_EXPIRATION] = expires
            if digest is not None:
                assert template.digest_at is not None
                patched[template.digest_at : template.digest_at + len(digest)] = digest
        out.append(bytes(patched))
    return out
