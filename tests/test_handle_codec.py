"""The native-protocol codec: the reference vectors byte for byte, and round trips."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from hypothesis import given
from hypothesis import strategies as st

from registry.models import HandleValue
from registry.values import (
    AdminRef,
    SiteInfo,
    ValueFormatError,
    ValueRef,
    decode_public_key,
    decode_vlist,
    encode_public_key,
    encode_vlist,
)
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle.proofs import (
    encode_secret_key_proof,
    public_key_proof,
    sign_response,
    verify_public_key_proof,
    verify_response,
    verify_secret_key_proof,
)
from tests import vectors

VECTORS = vectors.load("handle-native-reference.json")["vectors"]


def messages_of(vector: dict[str, Any]) -> list[tuple[str, bytes]]:
    found = [("request", bytes.fromhex(vector["request"]))]
    if "response" in vector:
        found.append(("response", bytes.fromhex(vector["response"])))
    datagrams = [bytes.fromhex(d) for d in vector.get("response_datagrams", [])]
    if datagrams:
        envelope = c.Envelope.from_bytes(datagrams[0])
        whole = None
        reassembly = c.Reassembly(envelope)
        for datagram in datagrams:
            piece = c.Envelope.from_bytes(datagram)
            whole = reassembly.add(piece.sequence, datagram[c.ENVELOPE_SIZE :]) or whole
        assert whole is not None
        assert c.fragments(whole) == datagrams  # split exactly as the reference did
        found.append(("response", whole))
    return found


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_reference_vectors_decode_and_reencode_byte_for_byte(vector: dict[str, Any]) -> None:
    for role, raw in messages_of(vector):
        message = c.Message.from_bytes(raw)
        assert message.to_bytes() == raw, role
        assert message.is_response == (role == "response")
        if role == "request" and message.opcode == c.OC_RESOLUTION:
            body = c.ResolutionRequest.from_bytes(message.body)
            assert body.to_bytes() == message.body
            assert b"/" in body.handle
        if role == "response":
            code = message.header.response_code
            if code == 1 and message.opcode == c.OC_RESOLUTION:
                values = c.HandleValues.from_bytes(message.body)
                assert values.to_bytes() == message.body
                for admin in (v for v in values.values if v.type == "HS_ADMIN"):
                    assert AdminRef.from_bytes(admin.data).to_bytes() == admin.data
            elif code == 1 and message.opcode == c.OC_GET_SITE_INFO:
                site = SiteInfo.from_bytes(message.body)
                assert site.to_bytes() == message.body
                assert site.servers[0].interfaces
            else:
                assert c.ErrorMessage.from_bytes(message.body).to_bytes() == message.body


def test_vector_facts() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    v3 = messages_of(by_name["V3-udp-index2+type"])
    request = c.ResolutionRequest.from_bytes(c.Message.from_bytes(v3[0][1]).body)
    assert (request.indexes, request.types) == ((2,), (b"CUSTOM_SPEC",))
    answer = c.HandleValues.from_bytes(c.Message.from_bytes(v3[1][1]).body)
    assert [v.index for v in answer.values] == [2, 3]
    v9 = messages_of(by_name["V9-udp-resolve-pv2.1"])
    assert c.Message.from_bytes(v9[1][1]).envelope.version == (2, 1)
    v6 = c.Message.from_bytes(messages_of(by_name["V6-udp-not-homed-301"])[1][1])
    assert c.ErrorMessage.from_bytes(v6.body).message == (
        b"That naming authority doesn't live here"
    )
    v1 = c.Message.from_bytes(messages_of(by_name["V1-udp-resolve-all"])[1][1])
    assert v1.header.flags == c.FLAG_AUTH | c.FLAG_RECU | c.FLAG_CACR | c.FLAG_PUBL


def test_handbook_example_request() -> None:
    """shared/reference/idis.md §6.2, built from our own encoder."""
    message = c.Message(
        envelope=c.Envelope(major=2, minor=3, suggested_major=2, suggested_minor=10, request_id=1),
        header=c.Header(opcode=1, expiration=1700000000),
        body=c.ResolutionRequest(b"88.111.1/teleinfo.cn").to_bytes(),
    )
    expected = (
        "0203020a"
        "00000000"
        "00000001"
        "00000000"
        "0000003c"  # envelope
        "00000001"
        "00000000"
        "00000000"
        "ffff"
        "00"
        "00"
        "6553f100"
        "00000020"  # header
        "00000014" + b"88.111.1/teleinfo.cn".hex() + "00000000"
        "00000000"  # body
        "00000000"  # credential length
    )
    assert message.to_bytes().hex() == expected
    assert len(message.to_bytes()) == 80


# --- round trips ------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
small_text = st.text(max_size=30)
values = st.builds(
    HandleValue,
    index=st.integers(1, 2**31 - 1),
    type=small_text,
    data=st.binary(max_size=200),
    ttl_type=st.integers(0, 1),
    ttl=u32,
    timestamp=u32,
    permissions=st.integers(0, 15),
    references=st.lists(st.tuples(small_text, u32), max_size=3).map(tuple),
)


@given(values)
def test_value_round_trip(value: HandleValue) -> None:
    from registry.wire import Reader

    assert c.decode_value(Reader(c.encode_value(value), "value")) == value


@given(
    st.builds(
        c.Envelope,
        major=st.integers(0, 255),
        minor=st.integers(0, 255),
        suggested_major=st.integers(0, 31),
        suggested_minor=st.integers(0, 255),
        session_id=u32,
        request_id=u32,
        sequence=u32,
        length=u32,
        truncated=st.booleans(),
        encrypted=st.booleans(),
        compressed=st.booleans(),
    ),
    st.builds(
        c.Header,
        opcode=u32,
        response_code=u32,
        flags=u32,
        site_serial=st.integers(0, 0xFFFF),
        recursion=st.integers(0, 255),
        expiration=u32,
    ),
    st.binary(max_size=300),
    st.binary(max_size=50),
)
def test_message_round_trip(
    envelope: c.Envelope, header: c.Header, body: bytes, credential: bytes
) -> None:
    assert c.Envelope.from_bytes(envelope.to_bytes()) == envelope
    message = c.Message(envelope, header, body, credential)
    decoded = c.Message.from_bytes(message.to_bytes())
    assert (decoded.body, decoded.credential) == (body, credential)
    assert decoded.header == replace(header, body_length=len(body))
    assert decoded.to_bytes() == message.to_bytes()


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_codec_error(raw: bytes) -> None:
    try:
        message = c.Message.from_bytes(raw)
    except c.CodecError:
        return
    for body_type in (
        c.ResolutionRequest,
        c.HandleValues,
        c.HandleOnly,
        c.RemoveValues,
        cred.ChallengeAnswer,
        c.HandleList,
        cred.Login,
        cred.VerifyChallenge,
    ):
        with contextlib.suppress(c.CodecError):
            body_type.from_bytes(message.body)  # type: ignore[attr-defined]


@given(
    st.builds(
        c.ResolutionRequest,
        handle=st.binary(max_size=60),
        indexes=st.lists(u32, max_size=5).map(tuple),
        types=st.lists(st.binary(max_size=20), max_size=5).map(tuple),
    )
)
def test_resolution_request_round_trip(body: c.ResolutionRequest) -> None:
    assert c.ResolutionRequest.from_bytes(body.to_bytes()) == body
    # Trailing bytes (the teleinfo SDK's extra field) are tolerated.
    assert c.ResolutionRequest.from_bytes(body.to_bytes() + b"\x00\x00\x00\x00") == body


@given(st.lists(st.binary(max_size=1500), min_size=1, max_size=3))
def test_udp_fragments_reassemble(bodies: list[bytes]) -> None:
    body = b"".join(bodies)
    message = c.Message(c.Envelope(request_id=7), c.Header(opcode=1, response_code=1), body)
    raw = message.to_bytes()
    parts = c.fragments(raw)
    assert all(len(p) <= c.UDP_PACKET for p in parts)
    reassembly = c.Reassembly(c.Envelope.from_bytes(parts[0]))
    results = [reassembly.add(c.Envelope.from_bytes(p).sequence, p[20:]) for p in reversed(parts)]
    assert results[-1] == raw


@given(
    st.builds(
        cred.ChallengeAnswer,
        auth_type=st.binary(max_size=10),
        handle=st.binary(max_size=30),
        index=u32,
        signed_response=st.binary(max_size=80),
    ),
    st.builds(cred.Login, handle=st.binary(max_size=30), index=u32),
    st.builds(
        c.RemoveValues, handle=st.binary(max_size=30), indexes=st.lists(u32, max_size=4).map(tuple)
    ),
    st.builds(c.HandleList, handles=st.lists(st.binary(max_size=20), max_size=4).map(tuple)),
    st.builds(
        cred.VerifyChallenge,
        handle=st.binary(max_size=20),
        index=u32,
        nonce=st.binary(max_size=16),
        digest=st.binary(max_size=32),
        signed_response=st.binary(max_size=40),
    ),
)
def test_body_round_trips(
    answer: cred.ChallengeAnswer,
    login: cred.Login,
    remove: c.RemoveValues,
    listing: c.HandleList,
    verify: cred.VerifyChallenge,
) -> None:
    for body in (answer, login, remove, listing, verify):
        assert type(body).from_bytes(body.to_bytes()) == body


@given(st.lists(st.tuples(small_text, st.integers(0, 2**31 - 1)), max_size=5))
def test_vlist_round_trip(members: list[tuple[str, int]]) -> None:
    refs = [ValueRef(h, i) for h, i in members]
    assert list(decode_vlist(encode_vlist(refs))) == refs


# --- digests, proofs, keys, signatures --------------------------------------------


def test_request_digest_follows_the_version() -> None:
    request = c.Message(c.Envelope(), c.Header(opcode=1), b"body")
    assert c.request_digest(request, (2, 11))[0] == c.DIGEST_SHA256
    assert len(c.request_digest(request, (2, 11))) == 33
    assert c.request_digest(request, (2, 5))[0] == c.DIGEST_SHA1
    assert len(c.request_digest(request, (2, 5))) == 21


@pytest.mark.parametrize(
    "code",
    [
        cred.MAC_MD5,
        cred.MAC_SHA1,
        cred.MAC_SHA256,
        cred.MAC_HMAC_SHA1,
        cred.MAC_HMAC_SHA256,
        cred.MAC_PBKDF2_HMAC_SHA1,
    ],
)
def test_secret_key_proofs(code: int) -> None:
    message = b"n" * 16 + b"d" * 32
    proof = encode_secret_key_proof(code, b"s3cret", message, salt=b"x" * 16, iterations=1000)
    assert proof[0] == code
    assert verify_secret_key_proof(b"s3cret", proof, message)
    assert not verify_secret_key_proof(b"wrong", proof, message)
    assert not verify_secret_key_proof(b"s3cret", proof, message[:-1] + b"e")
    assert not verify_secret_key_proof(b"s3cret", b"", message)


def test_pbkdf2_parameters_are_bounded() -> None:
    """The client picks the cost: beyond the bounds even a correct proof is refused."""
    secret, salt, message = b"secret", b"salt", b"nonce+digest"

    def proof(iterations: int, key_bits: int) -> bytes:
        derived = hashlib.pbkdf2_hmac("sha1", secret, salt, iterations, key_bits // 8)
        mac = hmac.digest(derived, message, "sha1")
        record = cred.Pbkdf2Proof(salt, iterations, key_bits, mac).to_bytes()
        return bytes([cred.MAC_PBKDF2_HMAC_SHA1]) + record

    assert verify_secret_key_proof(secret, proof(1000, 160), message)
    assert not verify_secret_key_proof(secret, proof(cred.MAX_PBKDF2_ITERATIONS + 1, 160), message)
    assert not verify_secret_key_proof(secret, proof(1000, cred.MAX_PBKDF2_KEY_BITS + 8), message)


@pytest.mark.parametrize("kind", ["rsa", "dsa"])
def test_public_keys_binary_and_pem(kind: str) -> None:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else dsa.generate_private_key(key_size=2048)
    )
    binary = encode_public_key(key.public_key())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for data in (binary, pem):
        assert decode_public_key(data).public_numbers() == key.public_key().public_numbers()
    message = b"n" * 16 + b"d" * 32
    proof = public_key_proof(key, message)
    assert verify_public_key_proof(binary, proof, message)
    assert verify_public_key_proof(pem, proof, message)
    assert not verify_public_key_proof(binary, proof, message + b"!")
    with pytest.raises(ValueFormatError):
        decode_public_key(b"\x00\x00\x00\x0bEC_PUB_KEY?\x00\x00")


def test_signed_responses_verify_with_the_published_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for version in ((2, 11), (2, 7), (2, 5)):
        message = c.Message(
            c.Envelope(
                major=version[0],
                minor=version[1],
                request_id=9,
                suggested_major=2,
                suggested_minor=11,
            ),
            c.Header(opcode=1, response_code=1),
            b"answer",
        )
        signed = c.Message.from_bytes(sign_response(message, key).to_bytes())
        assert verify_response(signed, key.public_key())
        tampered = c.Message(signed.envelope, signed.header, b"Answer", signed.credential)
        assert not verify_response(tampered, key.public_key())
        other = c.Message(
            replace(message.envelope, request_id=10),
            signed.header,
            signed.body,
            signed.credential,
        )
        assert not verify_response(other, key.public_key()) or version < (2, 7)


# --- encoded messages read and patched without decoding ----------------------------


@given(
    st.builds(c.Envelope, session_id=u32, request_id=u32, sequence=u32),
    st.builds(c.Header, opcode=u32, response_code=u32, flags=u32),
    st.binary(max_size=300),
    u32,
)
def test_raw_fields_are_the_decoded_ones(
    envelope: c.Envelope, header: c.Header, body: bytes, other_id: int
) -> None:
    raw = c.Message(envelope, header, body).to_bytes()
    decoded = c.Message.from_bytes(raw)
    assert c.message_length(raw) == decoded.envelope.length == len(raw) - c.ENVELOPE_SIZE
    assert c.message_length(bytearray(raw[: c.ENVELOPE_SIZE])) == decoded.envelope.length
    assert c.request_id_of(raw) == envelope.request_id
    assert c.response_code_of(raw) == header.response_code
    moved = c.Message.from_bytes(c.with_request_id(raw, other_id))
    assert moved == replace(decoded, envelope=replace(decoded.envelope, request_id=other_id))


@given(st.binary(min_size=c.UDP_PAYLOAD + 1, max_size=2000))
def test_fragments_are_told_from_whole_datagrams(body: bytes) -> None:
    small = c.Message(c.Envelope(), c.Header(opcode=1), b"x").to_bytes()
    assert not c.is_fragment(small)
    parts = c.fragments(c.Message(c.Envelope(), c.Header(opcode=1), body).to_bytes())
    assert len(parts) > 1 and all(c.is_fragment(p) for p in parts)
    # A sequence number beyond the message's last fragment is no fragment of it.
    envelope = c.Envelope.from_bytes(parts[0])
    stray = replace(envelope, sequence=len(parts)).to_bytes() + parts[0][c.ENVELOPE_SIZE :]
    assert not c.is_fragment(stray)
    too_long = replace(envelope, length=c.MAX_MESSAGE + 1).to_bytes() + b"x"
    assert not c.is_fragment(too_long)


def _resolution(request_id: int, *, flags: int = 0, handle: bytes = b"88.100/x") -> c.Message:
    body = c.ResolutionRequest(handle, (1,), (b"URL",)).to_bytes()
    header = c.Header(opcode=c.OC_RESOLUTION, flags=flags, expiration=request_id)
    return c.Message(c.Envelope(session_id=request_id, request_id=request_id), header, body)


def test_resolution_shape_keeps_what_decides_the_answer() -> None:
    shape = c.resolution_shape(_resolution(1).to_bytes(), b"U")
    assert shape is not None and shape.startswith(b"U")
    # Ids and expiration vary per request; an empty credential is no credential.
    assert c.resolution_shape(_resolution(2).to_bytes(), b"U") == shape
    raw = _resolution(1).to_bytes()
    envelope = replace(c.Envelope.from_bytes(raw), length=c.message_length(raw) - 4)
    assert c.resolution_shape(envelope.to_bytes() + raw[c.ENVELOPE_SIZE : -4], b"U") == shape
    assert c.resolution_shape(_resolution(1, flags=c.FLAG_RRDG).to_bytes(), b"U") != shape
    assert c.resolution_shape(_resolution(1, handle=b"88.100/y").to_bytes(), b"U") != shape
    # Only whole, plain resolution requests have a shape.
    certified = _resolution(1, flags=c.FLAG_CERT)
    signed = replace(_resolution(1), credential=cred.Credential(signature=b"s").to_bytes())
    site_info = replace(_resolution(1), header=c.Header(opcode=c.OC_GET_SITE_INFO))
    answer = replace(_resolution(1), header=c.Header(opcode=c.OC_RESOLUTION, response_code=1))
    for other in (certified, signed, site_info, answer):
        assert c.resolution_shape(other.to_bytes(), b"U") is None
    for broken in (raw[:-6], raw + b"\x00", raw[: c.ENVELOPE_SIZE + c.HEADER_SIZE]):
        assert c.resolution_shape(broken, b"U") is None


@pytest.mark.parametrize("version", [(2, 5), (2, 11)])
@pytest.mark.parametrize("body_size", [10, 1400])
def test_readdressed_answers_are_those_encoded_for_the_request(
    version: tuple[int, int], body_size: int
) -> None:
    """A response encoded for one request, readdressed to another, is byte for byte
    the response encoded for that other request (over UDP: every fragment)."""

    def answer(request: c.Message, expiration: int) -> list[bytes]:
        digest = c.request_digest(request, version)
        ids = request.envelope
        envelope = c.Envelope(*version, session_id=ids.session_id, request_id=ids.request_id)
        header = c.Header(opcode=1, response_code=1, flags=c.FLAG_RRDG, expiration=expiration)
        return c.fragments(c.Message(envelope, header, digest + b"v" * body_size).to_bytes())

    def request(n: int) -> c.Message:
        asked = _resolution(n, flags=c.FLAG_RRDG)
        return replace(asked, envelope=replace(asked.envelope, major=2, minor=version[1]))

    first, second = request(1), request(0x7FFFFFFE)
    parts = answer(first, 100)
    moved = c.readdress(
        parts,
        second.to_bytes(),
        200,
        c.RESPONSE_DIGEST_AT,
        c.digest_code_for(version),
    )
    assert moved == answer(second, 200)
    kept = c.readdress(parts, second.to_bytes(), 200)  # the digest left as it was
    assert kept[1:] == moved[1:] and kept[0] != moved[0]
    assert kept[0][c.RESPONSE_DIGEST_AT :] == parts[0][c.RESPONSE_DIGEST_AT :]
