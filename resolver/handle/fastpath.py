"""The native fast path: anonymous resolutions answered from encoded answers.

The whole response to an anonymous resolution is encoded once, kept in the
resolver's answer cache as a :class:`Template` under the request's *shape* (what
decides the answer: versions, opcode, flags, recursion count and body), and
made each later request's own by patching in its request id, session id,
expiration and request digest — no decode, no encode.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import codes as rc
from ..cache import AnswerCache
from ..guard import Label
from . import codec as c

FAST_CACHE_LIMIT = 100_000
"""Shapes remembered; beyond, the map starts again (a forgotten shape costs a miss)."""


@dataclass(frozen=True, slots=True)
class Template:
    """A cached response (one datagram or more), to be patched per request."""

    parts: list[bytes]
    label: Label
    """How the answer counts (metrics.tally): protocol, outcome, enterprise prefix."""
    digest_at: int | None = None
    """Offset of the request digest in the first part (RD requests), if any."""
    digest_code: int = 0

    @property
    def outcome(self) -> str:
        return self.label[1]

    @property
    def prefix(self) -> str:
        return self.label[2]


def template_of(
    message: c.Message, request: c.Message, version: tuple[int, int], prefix: str, *, udp: bool
) -> Template:
    """``message``, the answer to ``request``, as a template counted for ``prefix``."""
    encoded = message.to_bytes()
    parts = c.fragments(encoded) if udp else [encoded]
    label = (
        "handle_udp" if udp else "handle_tcp",
        rc.outcome_of(message.header.response_code),
        prefix,
    )
    if request.flag(c.FLAG_RRDG):
        return Template(parts, label, c.RESPONSE_DIGEST_AT, c.digest_code_for(version))
    return Template(parts, label)


class FastPath:
    """Which cached template answers a request: request shape → name key,
    learned on the slow path, then the resolver's answer cache."""

    def __init__(self, cache: AnswerCache) -> None:
        self.cache = cache
        self.shapes: dict[bytes, str] = {}

    def lookup(self, data: bytes, udp: bool) -> Template | None:
        """The template answering ``data``; None on a miss."""
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
    """The cache key of an anonymous resolution: its transport, then what decides
    its answer (:func:`codec.resolution_shape`); None for other requests."""
    return c.resolution_shape(data, b"U" if udp else b"T")


def patch(template: Template, request: bytes, expiration: int) -> list[bytes]:
    """The cached answer, made this request's: ids, expiration, request digest."""
    return c.readdress(
        template.parts, request, expiration, template.digest_at, template.digest_code
    )
