"""Fuzzing the binary front ends with hypothesis: the native Handle codec, the native
service (what the UDP and TCP listeners hand every request to) and the DNS service.

Bytes from anywhere — random, or real requests with fields, lengths and bodies
changed — must get an answer in the protocol's own terms (or, where the protocol
says so, none), never an exception and never an error in the logs. The JSON APIs
are fuzzed in tests/test_api_fuzz.py and, from the OpenAPI document, by
schemathesis in tests/test_openapi.py; ``python -m loadtest.fuzz`` runs all of
these for a million inputs against a real node, judging answers by the same rules
(``loadtest.oracle``). ``IDNODE_FUZZ_EXAMPLES=5000`` runs more examples here.
"""

from __future__ import annotations

import logging
import os
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idnode.openapi import document
from loadtest import fuzz_http, fuzz_lanes, fuzz_native, oracle
from loadtest.oracle import (
    WrongAnswer,
    check_decoders,
    check_dns_reply,
    check_native_answer,
    check_native_reply,
)
from registry.dnsnames import ZoneNames
from registry.models import PERM_RESTRICTED, HandleValue
from registry.services import Actor, Registry
from resolver.dns.service import DnsService
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle import service as svc
from resolver.resolution import Resolver
from tests.conftest import ApiClient
from tests.factories import ErrorLog, handle_value, hosted_enterprise

u32 = st.integers(0, 2**32 - 1)
ZONE = "hdl.idnode.test."
NAMES = [b"88.100.1/fuzz-1", b"88.100.1/fuzz-2", b"0.NA/88.100.1", b"88.100", b"1.2.156.86.1.1"]
FUZZ = settings(
    max_examples=int(os.environ.get("IDNODE_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- strategies ---------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few bytes flipped, cut, inserted or overwritten by extremes."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "extreme", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "extreme" and len(data) >= 4:
            at = min(at, len(data) - 4)
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff"]))
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


handle_names = st.sampled_from(NAMES) | st.binary(max_size=40)
handle_values = st.builds(
    HandleValue,
    index=st.integers(0, 2**32 - 1),
    type=st.sampled_from(["URL", "EMAIL", "HS_ADMIN", "HS_SITE", "HS_VLIST", "HS_SECKEY"])
    | st.text(max_size=12),
    data=st.binary(max_size=60),
    ttl_type=st.integers(0, 255),
    ttl=u32,
    timestamp=u32,
    permissions=st.integers(0, 255),
    references=st.lists(st.tuples(st.text(max_size=10), u32), max_size=2).map(tuple),
)
bodies = st.one_of(
    st.binary(max_size=120),
    st.builds(
        c.ResolutionRequest,
        handle=handle_names,
        indexes=st.lists(u32, max_size=3).map(tuple),
        types=st.lists(st.sampled_from([b"URL", b"HS_SITE", b"\xff"]), max_size=3).map(tuple),
    ).map(lambda b: b.to_bytes()),
    st.builds(
        c.HandleValues, handle=handle_names, values=st.lists(handle_values, max_size=3).map(tuple)
    ).map(lambda b: b.to_bytes()),
    st.builds(c.HandleOnly, handle=handle_names).map(lambda b: b.to_bytes()),
    st.builds(
        c.RemoveValues, handle=handle_names, indexes=st.lists(u32, max_size=3).map(tuple)
    ).map(lambda b: b.to_bytes()),
    st.builds(
        cred.ChallengeAnswer,
        auth_type=st.sampled_from([b"HS_SECKEY", b"HS_PUBKEY", b""]),
        handle=st.sampled_from([b"0.NA/88.100", b"88.100.1/fuzz-1"]) | st.binary(max_size=20),
        index=st.sampled_from([300, 0]) | u32,
        signed_response=st.binary(max_size=60),
    ).map(lambda b: b.to_bytes()),
    st.builds(
        cred.VerifyChallenge,
        handle=handle_names,
        index=u32,
        nonce=st.binary(max_size=20),
        digest=st.binary(max_size=40),
        signed_response=st.binary(max_size=40),
    ).map(lambda b: b.to_bytes()),
    st.builds(cred.Login, handle=handle_names, index=u32).map(lambda b: b.to_bytes()),
)
credentials = (
    st.sampled_from([b""]) | st.binary(max_size=40) | st.just(cred.Credential().to_bytes())
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A well-framed message with any header and a body that is often a real one."""
    envelope = c.Envelope(
        major=draw(st.sampled_from([2, 1, 3, 0, 255])),
        minor=draw(st.integers(0, 12) | st.integers(0, 255)),
        suggested_major=draw(st.integers(0, 31)),
        suggested_minor=draw(st.integers(0, 255)),
        session_id=draw(st.sampled_from([0, 1]) | u32),
        request_id=draw(u32),
        truncated=draw(st.booleans()),
        encrypted=draw(st.booleans()),
        compressed=draw(st.booleans()),
    )
    header = c.Header(
        opcode=draw(st.sampled_from(fuzz_native.OPCODES) | u32),
        response_code=draw(st.sampled_from([0, 0, 0, 1]) | u32),
        flags=draw(st.sampled_from([0, c.FLAG_RRDG, c.FLAG_CERT, c.FLAG_RECU | c.FLAG_PUBL]) | u32),
        site_serial=draw(st.integers(0, 0xFFFF)),
        recursion=draw(st.integers(0, 255)),
        expiration=draw(u32),
    )
    return c.Message(envelope, header, draw(bodies), draw(credentials)).to_bytes()


native_inputs = st.one_of(
    st.binary(max_size=200),
    messages(),
    messages().flatmap(mutated),
)


# --- the codec ------------------------------------------------------------------------


@FUZZ
@given(data=native_inputs)
def test_codec_raises_only_its_own_error_and_messages_encode_back(data: bytes) -> None:
    assert check_decoders(data) in ("decoded", "refused")


@FUZZ
@given(
    body=st.builds(
        c.HandleValues, handle=st.binary(max_size=30), values=st.lists(handle_values, max_size=4)
    ),
    credential=st.builds(
        cred.Credential,
        signature_type=st.binary(max_size=12),
        digest_algorithm=st.binary(max_size=12),
        signature=st.binary(max_size=40),
        signer_handle=st.binary(max_size=20),
        signer_index=u32,
    ),
    proof=st.builds(
        cred.Pbkdf2Proof, salt=st.binary(max_size=16), iterations=u32, key_bits=u32, mac=st.binary()
    ),
    signed=st.builds(cred.SignedProof, algorithm=st.binary(max_size=10), signature=st.binary()),
)
def test_more_bodies_round_trip(
    body: c.HandleValues,
    credential: cred.Credential,
    proof: cred.Pbkdf2Proof,
    signed: cred.SignedProof,
) -> None:
    body = replace(body, values=tuple(body.values))
    assert c.HandleValues.from_bytes(body.to_bytes()) == body
    assert cred.Credential.from_bytes(credential.to_bytes()) == credential
    assert cred.Pbkdf2Proof.from_bytes(proof.to_bytes()) == proof
    assert cred.SignedProof.from_bytes(signed.to_bytes()) == signed


# --- the native service -----------------------------------------------------------


@pytest.fixture
def logged_errors() -> Iterator[ErrorLog]:
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    yield errors
    logging.getLogger().removeHandler(errors)


async def _seed(registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    values = [
        handle_value(1, "URL", "https://example.org/fuzz"),
        handle_value(2, "SECRET", "internal", permissions=PERM_RESTRICTED),
        handle_value(3, "BLOB", "x" * 900),
    ]
    for suffix in ("fuzz-1", "fuzz-2"):
        await registry.handles.create(admin, f"{prefix}/{suffix}", values, overwrite=False)


@dataclass
class Native:
    service: svc.HandleService
    errors: ErrorLog


@pytest.fixture
async def native(registry: Registry, admin: Actor, logged_errors: ErrorLog) -> Native:
    await _seed(registry, admin)
    return Native(svc.HandleService(Resolver(registry), registry), logged_errors)


@FUZZ
@given(data=native_inputs, udp=st.booleans())
async def test_native_service_answers_anything(native: Native, data: bytes, udp: bool) -> None:
    connection = svc.Connection(tcp=not udp, remote="127.0.0.1")
    fast = native.service.fast(data, udp=udp)
    assert fast is None or all(isinstance(p, bytes) for p in fast)
    parts = await native.service.handle(data, connection)
    check_native_reply(data, parts, udp=udp)
    native.service.forget(connection)
    assert native.errors.records == [], native.errors.text()


@FUZZ
@given(
    name=st.sampled_from(NAMES),
    flags=st.sampled_from([0, c.FLAG_RRDG, c.FLAG_CERT, c.FLAG_PUBL]),
    data=st.data(),
)
async def test_native_resolutions_and_their_mutants(
    native: Native, name: bytes, flags: int, data: st.DataObject
) -> None:
    """A real resolution first (the fast path learns it), then mutants of it: the
    cache must never answer a mutant with the original's bytes for another question."""
    request = c.Message(
        c.Envelope(request_id=7),
        c.Header(opcode=c.OC_RESOLUTION, flags=flags),
        c.ResolutionRequest(name).to_bytes(),
    ).to_bytes()
    for udp in (True, False):
        answered = await native.service.handle(request, svc.Connection(tcp=not udp))
        assert check_native_reply(request, answered, udp=udp) != ["silent"]
        mutant = data.draw(mutated(request))
        slow = await native.service.handle(mutant, svc.Connection(tcp=not udp))
        check_native_reply(mutant, slow, udp=udp)
        fast = native.service.fast(mutant, udp=udp)
        if fast is not None:  # a cached answer must be the answer the slow path gives
            check_native_reply(mutant, fast, udp=udp)
            assert _strip_time(fast) == _strip_time(slow)
    assert native.errors.records == [], native.errors.text()


def _strip_time(parts: list[bytes]) -> list[bytes]:
    """Answers without their expiration (the clock moves between two answers)."""
    return [p[:36] + p[40:] if n == 0 else p for n, p in enumerate(parts)]


# --- DNS ----------------------------------------------------------------------------


@dataclass
class Dns:
    service: DnsService
    names: ZoneNames
    errors: ErrorLog


@pytest.fixture
async def dns_zone(registry: Registry, admin: Actor, logged_errors: ErrorLog) -> Dns:
    await _seed(registry, admin)
    resolver = Resolver(registry)
    names = ZoneNames.of(ZONE)
    service = DnsService(resolver, names, ns_address="127.0.0.1")
    await service.start()
    return Dns(service, names, logged_errors)


QNAMES = [
    ZONE,
    f"ns1.{ZONE}",
    f"1.100.88.{ZONE}",
    f"fuzz-1._.1.100.88.{ZONE}",
    f"b32-x._.1.100.88.{ZONE}",
    f"1.1.86.156.2.1.oid-res.{ZONE}",
    "example.com.",
]
QTYPES = ["A", "TXT", "URI", "NAPTR", "ANY", "SOA", "NS", "AXFR", "OPT", "MAILA", "TYPE65000"]


@st.composite
def dns_queries(draw: st.DrawFn) -> bytes:
    """A query dnspython builds (EDNS, flags, opcode, class vary), maybe mutated."""
    query = dns.message.make_query(
        draw(st.sampled_from(QNAMES)),
        draw(st.sampled_from(QTYPES)),
        rdclass=draw(st.sampled_from(["IN", "CH", "ANY"])),
        use_edns=draw(st.sampled_from([None, 0, 1])),
        payload=draw(st.sampled_from([512, 1232, 4096, 0])),
        want_dnssec=draw(st.booleans()),
    )
    query.flags = dns.flags.Flag(
        draw(st.sampled_from([0, dns.flags.RD, dns.flags.CD, dns.flags.AD, dns.flags.TC]))
    )
    query.set_opcode(
        draw(
            st.sampled_from(
                [dns.opcode.QUERY, dns.opcode.QUERY, dns.opcode.STATUS, dns.opcode.UPDATE]
            )
        )
    )
    query.id = draw(st.integers(0, 0xFFFF))
    wire = query.to_wire()
    return draw(st.just(wire) | mutated(wire))


@FUZZ
@given(data=st.one_of(st.binary(max_size=120), dns_queries()), udp=st.booleans())
async def test_dns_answers_anything(dns_zone: Dns, data: bytes, udp: bool) -> None:
    answer = await dns_zone.service.handle(data, udp=udp)
    check_dns_reply(data, answer, udp=udp)
    cached = dns_zone.service.fast(data, udp=udp)
    assert cached is None or cached == answer
    assert dns_zone.errors.records == [], dns_zone.errors.text()


# --- the oracle's own checks ------------------------------------------------------------


def _message(request_id: int, opcode: int, code: int = 0, body: bytes = b"") -> bytes:
    return c.Message(
        c.Envelope(request_id=request_id), c.Header(opcode=opcode, response_code=code), body
    ).to_bytes()


def test_the_oracle_refuses_wrong_native_answers() -> None:
    """Each rule can fail: the checks above would catch an answer that broke it."""
    request = _message(5, c.OC_RESOLUTION, body=c.ResolutionRequest(b"x/y").to_bytes())
    right = _message(5, c.OC_RESOLUTION, code=1)
    assert check_native_reply(request, [right], udp=False) == ["rc 1"]
    wrong = {
        "answer for another request id": [_message(6, c.OC_RESOLUTION, code=1)],
        "answer for another opcode": [_message(5, c.OC_GET_SITE_INFO, code=1)],
        "answer without a response code": [_message(5, c.OC_RESOLUTION)],
        "answer not as long as its envelope says": [right + b"\x00"],
        "answer does not decode": [right[:30]],
        "no answer": [],
    }
    for reason, parts in wrong.items():
        with pytest.raises(WrongAnswer) as caught:
            check_native_reply(request, parts, udp=False)
        assert caught.value.reason == reason
    garbage = b"\x02\x0b" + bytes(18) + b"junk" * 10  # an envelope, then no message
    with pytest.raises(WrongAnswer, match="garbage not answered with RC 4"):
        check_native_answer(garbage, None, _message(0, c.OC_RESOLUTION, code=2))
    response = _message(5, c.OC_RESOLUTION, code=1)  # nothing was asked
    assert check_native_reply(response, [], udp=True) == ["silent"]
    with pytest.raises(WrongAnswer, match="an answer where none is owed"):
        check_native_reply(response, [right], udp=True)
    with pytest.raises(WrongAnswer, match="a datagram over 512 bytes"):
        check_native_reply(request, [right + bytes(600)], udp=True)


def test_the_oracle_refuses_wrong_dns_answers() -> None:
    query = dns.message.make_query("x.example.", "TXT")
    query.id = 77
    asked = query.to_wire()
    right = dns.message.make_response(query)
    assert check_dns_reply(asked, right.to_wire(), udp=True) == "NOERROR"
    servfail = dns.message.make_response(query)
    servfail.set_rcode(dns.rcode.SERVFAIL)
    other_id = dns.message.make_response(query)
    other_id.id = 78
    other_opcode = dns.message.make_response(query)
    other_opcode.set_opcode(dns.opcode.STATUS)
    big = dns.message.make_response(query)
    long_text = " ".join(['"' + "a" * 255 + '"'] * 5)  # 1,280 bytes of strings
    big.answer.append(dns.rrset.from_text("x.example.", 60, "IN", "TXT", long_text))
    wrong = {
        "SERVFAIL with the store up": servfail.to_wire(),
        "answer with another id": other_id.to_wire(),
        "answer with another opcode": other_opcode.to_wire(),
        "answer without QR": asked,
        "answer over 1232 bytes": big.to_wire(),
        "no answer": None,
    }
    for reason, answer in wrong.items():
        with pytest.raises(WrongAnswer) as caught:
            check_dns_reply(asked, answer, udp=True)
        assert caught.value.reason == reason
    runt = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0)[:11]
    assert check_dns_reply(runt, None, udp=True) == "silent"
    garbage = struct.pack(">HHHHHH", 9, 0, 1, 0, 0, 0) + b"\xff" * 3  # a question cut short
    formerr = struct.pack(">HHHHHH", 9, 0x8001, 0, 0, 0, 0)
    assert check_dns_reply(garbage, formerr, udp=True) == "FORMERR"
    with pytest.raises(WrongAnswer, match="malformed query not answered FORMERR"):
        check_dns_reply(garbage, struct.pack(">HHHHHH", 9, 0x8005, 0, 0, 0, 0), udp=True)
    longer = dns.message.make_response(dns.message.make_query("x.example.", "A"))
    longer.id = 9
    longer.set_rcode(dns.rcode.FORMERR)
    with pytest.raises(WrongAnswer, match="answer to a malformed query larger than it"):
        check_dns_reply(garbage, longer.to_wire(), udp=True)


def test_the_oracle_refuses_a_codec_that_breaks_its_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    def crashes(data: bytes) -> object:
        raise IndexError(len(data))

    monkeypatch.setattr(oracle, "CODEC_DECODERS", (crashes,))
    with pytest.raises(WrongAnswer, match="codec raised something else"):
        check_decoders(b"any bytes")


# --- what fuzzing found ------------------------------------------------------------------


async def test_dated_login_with_non_ascii_password_is_refused_not_a_500(api: ApiClient) -> None:
    """schemathesis found it: ``/identity/token/v1`` compared the password with
    ``hmac.compare_digest`` on str, which raises TypeError for non-ASCII text (500)."""
    for password in ("ü" * 64, "密码", "\u00e9"):
        status, body = await api.call(
            "POST", "/identity/token/v1", json={"username": "nobody", "password": password}
        )
        assert status == 200, body
        assert body["status"] == -2, body


def test_a_value_of_empty_type_and_data_decodes() -> None:
    """hypothesis found it: the codec took 27 bytes for the smallest value, which is
    26 (empty type and data, no references), and refused such a body as RC 4."""
    body = c.HandleValues(b"88.100.1/x", (HandleValue(index=1, type="", data=b""),))
    assert c.HandleValues.from_bytes(body.to_bytes()) == body


# --- the long run's own checks (loadtest.fuzz) ---------------------------------------------


def test_long_run_counts_what_the_oracle_refuses() -> None:
    """The million-input runner counts a wrong answer as a failure of its lane, with
    the input, and tallies right ones by what they said."""
    lane = fuzz_lanes.Lane("native", 1)
    request = _message(5, c.OC_RESOLUTION)
    asked = c.Message.from_bytes(request)
    right, other = _message(5, c.OC_RESOLUTION, 1), _message(5, c.OC_GET_SITE_INFO, 1)
    fuzz_lanes.judge(lane, request, check_native_answer, request, asked, right)
    fuzz_lanes.judge(lane, request, check_native_answer, request, asked, other)
    assert (lane.failures, dict(lane.outcomes)) == (1, {"rc 1": 1})
    assert lane.samples[0]["reason"] == "answer for another opcode"
    assert lane.samples[0]["input"] == request.hex()


def test_long_run_checks_answers_against_the_openapi_document() -> None:
    """An undocumented status, a body not as documented, a content type not documented."""
    doc = document()
    conformance = fuzz_http.Conformance(doc)
    ops = {(op.method, op.path): op for op in fuzz_http.operations(doc)}
    site = ops[("GET", "/api/site")]
    assert conformance.validate(site, 418, "application/json", b"{}") is not None
    assert conformance.validate(site, 200, "text/plain", b"x") is not None
    assert conformance.validate(site, 200, "application/json", b'{"responseCode": 1}')
    healthy = b'{"status": "ok", "database": "ok"}'
    assert conformance.validate(ops[("GET", "/healthz")], 200, "application/json", healthy) is None


def test_long_run_inputs_are_reproducible() -> None:
    """The same seed makes the same inputs (a failure can be replayed)."""
    names = ["88.100.1/a", "88.100.2/b"]
    first = fuzz_native.NativeInputs(random.Random(9), names)
    second = fuzz_native.NativeInputs(random.Random(9), names)
    assert [first.next() for _ in range(200)] == [second.next() for _ in range(200)]
