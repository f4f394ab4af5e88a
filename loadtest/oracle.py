"""What a right answer to any input is: the native Handle codec, native answers and DNS answers.

The fuzz tests (``tests/test_fuzz.py``, against the services in process) and the long
fuzzing run (``python -m loadtest.fuzz``, against a real node over the network) judge
what they see by these same rules. Each ``check_*`` returns a short name of what was
seen (for tallies: ``"rc 1"``, ``"NXDOMAIN"``, ``"silent"``) or raises
:class:`WrongAnswer` saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import dns.flags
import dns.message
import dns.rcode

from registry.values import AdminRef, SiteInfo, ValueFormatError, decode_vlist
from registry.wire import Reader
from resolver.codes import RC_PROTOCOL_ERROR
from resolver.handle import codec as c
from resolver.handle import credentials as cred

DNS_HEADER_SIZE = 12
DNS_UDP_ANSWER_LIMIT = 1232
"""No UDP answer of the node is larger, whatever payload the query offers (the EDNS
size of DNS flag day 2020; a plain query gets at most 512)."""
DNS_TCP_ANSWER_LIMIT = 65535
"""A TCP answer's two-byte length prefix cannot say more."""
_SHOWN = 200
"""Bytes of a wrong answer kept in the detail."""


class WrongAnswer(Exception):
    """An answer (or a decoder's behaviour) the protocol does not allow."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        """What is wrong, the same words for every input with this fault."""
        self.detail = detail
        """What was seen: the offending value or the answer's first bytes."""


# --- the native codec ------------------------------------------------------------------


def _values(data: bytes) -> object:
    return c.decode_values(Reader(data, "values", error=c.CodecError))


def _digest(data: bytes) -> object:
    return c.read_digest(Reader(data, "digest", error=c.CodecError))


CODEC_DECODERS: tuple[Callable[[bytes], object], ...] = (
    c.Envelope.from_bytes,
    c.Header.from_bytes,
    c.Message.from_bytes,
    c.ResolutionRequest.from_bytes,
    c.HandleValues.from_bytes,
    lambda data: c.HandleValues.from_bytes(data, values_optional=True),
    c.HandleOnly.from_bytes,
    c.RemoveValues.from_bytes,
    c.ErrorMessage.from_bytes,
    cred.Challenge.from_bytes,
    cred.ChallengeAnswer.from_bytes,
    cred.VerifyChallenge.from_bytes,
    c.HandleList.from_bytes,
    cred.Login.from_bytes,
    cred.Pbkdf2Proof.from_bytes,
    cred.SignedProof.from_bytes,
    cred.Credential.from_bytes,
    _values,
    _digest,
)
"""Every way the codec reads bytes a peer sent."""
VALUE_DECODERS: tuple[Callable[[bytes], object], ...] = (
    AdminRef.from_bytes,
    decode_vlist,
    SiteInfo.from_bytes,
)
"""Readers of the value payloads a peer sends (HS_ADMIN, HS_VLIST, HS_SITE)."""


def check_decoders(data: bytes) -> str:
    """Any bytes through every decoder: the codec raises only ``CodecError``, value
    payloads only ``ValueFormatError``; any 20 bytes read as an envelope; a message
    that decodes encodes back to itself. ``"decoded"`` or ``"refused"`` (as a message)."""
    for decode in CODEC_DECODERS:
        try:
            decode(data)
        except c.CodecError:
            continue
        except Exception as exc:
            raise WrongAnswer("codec raised something else", repr(exc)) from exc
    for decode_value in VALUE_DECODERS:
        try:
            decode_value(data)
        except ValueFormatError:
            continue
        except Exception as exc:
            raise WrongAnswer("value decoder raised something else", repr(exc)) from exc
    if len(data) >= c.ENVELOPE_SIZE:
        try:
            c.Envelope.from_bytes(data)
        except c.CodecError as exc:
            raise WrongAnswer("an envelope's 20 bytes did not read", str(exc)) from exc
    try:
        message = c.Message.from_bytes(data)
    except c.CodecError:
        return "refused"
    again = c.Message.from_bytes(message.to_bytes())
    if (
        (again.header, again.body, again.credential)
        != (message.header, message.body, message.credential)
        or replace(again.envelope, length=0) != replace(message.envelope, length=0)
        or again.to_bytes() != message.to_bytes()
    ):
        raise WrongAnswer("decoded message does not encode back to itself")
    return "decoded"


# --- native answers ------------------------------------------------------------------


def read_native(request: bytes) -> c.Message | None:
    """The request as the node reads it; None when it does not decode."""
    try:
        return c.Message.from_bytes(request)
    except c.CodecError:
        return None


def native_answer_owed(request: bytes, asked: c.Message | None, *, udp: bool) -> bool:
    """Whether the protocol owes ``request`` (read as ``asked``) an answer: never to a
    response (nothing was asked), and over UDP not to bytes that do not decode (or are
    encrypted) and are shorter than an envelope and a header (any answer would be
    larger: amplification)."""
    if asked is not None and not c.is_encrypted(request):
        return not asked.is_response
    return not (udp and len(request) < c.ENVELOPE_SIZE + c.HEADER_SIZE)


def check_native_answer(request: bytes, asked: c.Message | None, answer: bytes) -> str:
    """One whole answer message to ``request`` (read as ``asked``): it decodes, is as
    long as its envelope says, carries a response code and the request's id; what does
    not decode is answered RC 4 (protocol error), what does with the request's opcode."""
    try:
        message = c.Message.from_bytes(answer)
    except c.CodecError as exc:
        raise WrongAnswer("answer does not decode", f"{exc}: {answer[:_SHOWN].hex()}") from exc
    if len(answer) != c.ENVELOPE_SIZE + message.envelope.length:
        raise WrongAnswer(
            "answer not as long as its envelope says",
            f"{len(answer)} bytes, envelope length {message.envelope.length}",
        )
    code = message.header.response_code
    if code == 0:
        raise WrongAnswer("answer without a response code", answer[:_SHOWN].hex())
    if c.is_encrypted(request) and 500 <= code <= 505 and message.opcode == 0:
        # Encrypted under no session the node holds: a session error (HANDLE.NET's
        # opcode 0), whatever the ciphertext would read as in the clear.
        asked_id = c.Envelope.from_bytes(request).request_id
    elif asked is None:
        if code != RC_PROTOCOL_ERROR:
            raise WrongAnswer("garbage not answered with RC 4", str(code))
        asked_id = (
            c.Envelope.from_bytes(request).request_id
            if len(request) >= c.ENVELOPE_SIZE
            else message.envelope.request_id  # no id to echo
        )
    else:
        if message.opcode != asked.opcode:
            raise WrongAnswer("answer for another opcode", f"{message.opcode} != {asked.opcode}")
        asked_id = asked.envelope.request_id
    if message.envelope.request_id != asked_id:
        raise WrongAnswer(
            "answer for another request id", f"{message.envelope.request_id} != {asked_id}"
        )
    return f"rc {code}"


def reassembled(datagrams: Sequence[bytes]) -> bytes:
    """A UDP answer's datagrams (at most 512 bytes each) as the one message they carry."""
    if any(len(part) > c.UDP_PACKET for part in datagrams):
        sizes = ", ".join(str(len(part)) for part in datagrams)
        raise WrongAnswer(f"a datagram over {c.UDP_PACKET} bytes", sizes)
    if len(datagrams) == 1:
        return datagrams[0]
    try:
        whole = c.Reassembly(c.Envelope.from_bytes(datagrams[0]))
        result = None
        for part in datagrams:
            result = whole.add(c.Envelope.from_bytes(part).sequence, part[c.ENVELOPE_SIZE :])
    except c.CodecError as exc:
        raise WrongAnswer("datagrams do not make up one message", str(exc)) from exc
    if result is None:
        raise WrongAnswer("datagrams of an answer missing", f"{len(datagrams)} came")
    return result


def check_native_reply(request: bytes, parts: Sequence[bytes], *, udp: bool) -> list[str]:
    """All a listener sends back for ``request``: nothing where no answer is owed; else
    over UDP datagrams that make up one answer, over TCP whole answers, each right."""
    asked = read_native(request)
    if not native_answer_owed(request, asked, udp=udp):
        if parts:
            raise WrongAnswer("an answer where none is owed", parts[0][:_SHOWN].hex())
        return ["silent"]
    if not parts:
        raise WrongAnswer("no answer")
    answers = [reassembled(parts)] if udp else list(parts)
    return [check_native_answer(request, asked, answer) for answer in answers]


# --- DNS answers ---------------------------------------------------------------------


def dns_answer_owed(query: bytes) -> bool:
    """Whether a query is owed an answer: it has a whole header and is no response."""
    return len(query) >= DNS_HEADER_SIZE and not query[2] & 0x80


def check_dns_answer(query: bytes, answer: bytes, *, udp: bool) -> str:
    """An answer to ``query``: its id, QR set, it parses, no SERVFAIL (the fuzzers keep
    the store up), within the transport's size; a query that does not parse gets a
    FORMERR no larger than itself (no amplification), one that does its own opcode."""
    if answer[:2] != query[:2]:
        raise WrongAnswer("answer with another id", answer[:_SHOWN].hex())
    try:
        parsed = dns.message.from_wire(answer)
    except Exception as exc:  # dnspython raises many kinds for bytes it cannot read
        raise WrongAnswer("answer does not parse", f"{exc!r}: {answer[:_SHOWN].hex()}") from exc
    rcode = parsed.rcode()
    if not parsed.flags & dns.flags.QR:
        raise WrongAnswer("answer without QR", answer[:_SHOWN].hex())
    if rcode == dns.rcode.SERVFAIL:
        raise WrongAnswer("SERVFAIL with the store up", answer[:_SHOWN].hex())
    limit = DNS_UDP_ANSWER_LIMIT if udp else DNS_TCP_ANSWER_LIMIT
    if len(answer) > limit:
        raise WrongAnswer(f"answer over {limit} bytes", str(len(answer)))
    try:
        asked = dns.message.from_wire(query)
    except Exception:
        if rcode != dns.rcode.FORMERR:
            raise WrongAnswer(
                "malformed query not answered FORMERR", dns.rcode.to_text(rcode)
            ) from None
        if len(answer) > len(query):
            raise WrongAnswer(
                "answer to a malformed query larger than it", f"{len(answer)} > {len(query)}"
            ) from None
    else:
        if parsed.opcode() != asked.opcode():
            raise WrongAnswer("answer with another opcode", f"{parsed.opcode()}")
    return dns.rcode.to_text(rcode)


def check_dns_reply(query: bytes, answer: bytes | None, *, udp: bool) -> str:
    """All a listener sends back for ``query`` (None: nothing): silence for a runt or a
    response, else a right answer."""
    if not dns_answer_owed(query):
        if answer is not None:
            raise WrongAnswer("an answer to a runt or a response", answer[:_SHOWN].hex())
        return "silent"
    if answer is None:
        raise WrongAnswer("no answer")
    return check_dns_answer(query, answer, udp=udp)
