"""Building answers to native-protocol requests: pure functions over the codec.

Shared by every server that speaks the protocol — the node's service and the
mock top-level node's — so that both answer with the same version choice, flag
echo and request digest rules. :class:`Replies` binds them to one server's site
serial and clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import codes as rc
from ..limits import Limit, Refusal
from . import codec as c
from .codec import FLAG_AUTH, FLAG_CONT, FLAG_RRDG

EXPIRATION_SECONDS = 43_200
"""How long an answer may be trusted, from when it is sent (as HANDLE.NET)."""


def answer_version(envelope: c.Envelope) -> tuple[int, int]:
    """min(the peer's suggested version, ours), never below 2.1."""
    return max(c.OLDEST_VERSION, min(envelope.suggested, c.OUR_VERSION))


def answer_envelope(
    version: tuple[int, int], *, request_id: int, session_id: int = 0
) -> c.Envelope:
    """An answer's envelope: at the version answered, suggesting ours."""
    return c.Envelope(
        major=version[0],
        minor=version[1],
        suggested_major=c.OUR_VERSION[0],
        suggested_minor=c.OUR_VERSION[1],
        session_id=session_id,
        request_id=request_id,
    )


def response(
    request: c.Message,
    version: tuple[int, int],
    code: int,
    body: bytes = b"",
    *,
    site_serial: int,
    now: float,
    flags: int = 0,
    session_id: int | None = None,
    digest: bool | None = None,
) -> c.Message:
    """A response to ``request``: its flags echoed plus AT, the request digest
    first in the body when asked (or when ``digest`` says so)."""
    with_digest = request.flag(FLAG_RRDG) if digest is None else digest
    if with_digest:
        body = c.request_digest(request, version) + body
    response_flags = (request.header.flags | FLAG_AUTH | flags) & ~FLAG_CONT
    if with_digest:
        response_flags |= FLAG_RRDG
    else:
        response_flags &= ~FLAG_RRDG
    return c.Message(
        envelope=answer_envelope(
            version,
            request_id=request.envelope.request_id,
            session_id=request.envelope.session_id if session_id is None else session_id,
        ),
        header=c.Header(
            opcode=request.opcode,
            response_code=code,
            flags=response_flags,
            site_serial=site_serial,
            recursion=request.header.recursion,
            expiration=int(now) + EXPIRATION_SECONDS,
        ),
        body=body,
    )


def error(
    request: c.Message,
    version: tuple[int, int],
    code: int,
    text: str = "",
    *,
    site_serial: int,
    now: float,
) -> c.Message:
    """An error response whose body is the message ``text``."""
    body = c.ErrorMessage(text.encode("utf-8")).to_bytes()
    return response(request, version, code, body, site_serial=site_serial, now=now)


def garbage(data: bytes, reason: str, *, udp: bool, site_serial: int, now: float) -> list[bytes]:
    """RC 4 for bytes that are no message. A datagram shorter than envelope and
    header gets no answer: a reply larger than the request would amplify."""
    if udp and len(data) < c.ENVELOPE_SIZE + c.HEADER_SIZE:
        return []
    try:
        envelope = c.Envelope.from_bytes(data)
    except c.CodecError:
        envelope = c.Envelope(major=2, minor=1)
    message = c.Message(
        envelope=answer_envelope(answer_version(envelope), request_id=envelope.request_id),
        header=c.Header(
            opcode=0,
            response_code=rc.RC_PROTOCOL_ERROR,
            flags=FLAG_AUTH,
            site_serial=site_serial,
            expiration=int(now) + EXPIRATION_SECONDS,
        ),
        body=c.ErrorMessage(reason.encode("utf-8")[:200]).to_bytes(),
    )
    encoded = message.to_bytes()
    return c.fragments(encoded) if udp else [encoded]


@dataclass(frozen=True, slots=True)
class Replies:
    """:func:`response`, :func:`error` and :func:`garbage` as one server sends
    them: under its site serial, expiring from its clock's now."""

    site_serial: int
    clock: Callable[[], float]

    def response(
        self,
        request: c.Message,
        version: tuple[int, int],
        code: int,
        body: bytes = b"",
        *,
        flags: int = 0,
        session_id: int | None = None,
        digest: bool | None = None,
    ) -> c.Message:
        return response(
            request,
            version,
            code,
            body,
            site_serial=self.site_serial,
            now=self.clock(),
            flags=flags,
            session_id=session_id,
            digest=digest,
        )

    def error(
        self, request: c.Message, version: tuple[int, int], code: int, text: str = ""
    ) -> c.Message:
        return error(request, version, code, text, site_serial=self.site_serial, now=self.clock())

    def error_for(self, data: bytes, code: int, text: str) -> c.Message:
        """An error answering the request in ``data`` (CodecError: it is no message)."""
        request = c.Message.from_bytes(data)
        return self.error(request, answer_version(request.envelope), code, text)

    def garbage(self, data: bytes, reason: str, *, udp: bool) -> list[bytes]:
        return garbage(data, reason, udp=udp, site_serial=self.site_serial, now=self.clock())

    def refusal(self, data: bytes, refusal: Refusal, udp: bool) -> list[bytes]:
        """RC 3 (too busy) to a client over its rate, IDIS 603 over its daily
        requests; the answer is no larger than a short error, whatever was asked."""
        daily = refusal.limit is Limit.DAILY
        try:
            answer = self.error_for(
                data,
                rc.RC_REQUEST_LIMIT_DAILY if daily else rc.RC_SERVER_TOO_BUSY,
                f"{'daily request limit' if daily else 'too many requests'}; "
                f"retry in {refusal.retry_after_header} s",
            )
        except c.CodecError as exc:
            return self.garbage(data, str(exc), udp=udp)
        return c.fragments(answer.to_bytes()) if udp else [answer.to_bytes()]

    def ask_over_tcp(self, request: bytes, answer: list[bytes]) -> list[bytes]:
        """RC 2 in one small datagram, instead of ``answer``, too large for UDP: what
        makes HANDLE.NET's resolver ask the same server again over TCP at once
        (RC 3 it takes as final; silence costs it seconds)."""
        try:
            error = self.error_for(request, rc.RC_ERROR, "answer too large for UDP: ask over TCP")
        except c.CodecError:
            return []
        return [error.to_bytes()]
