"""The JWS codec, keys, claims and digests of trusted resolution (registry/trust),
checked against independent implementations: PyJWT for RS256, the ``openssl``
command line for DS256, digests written afresh from RFC 3651."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.crypto import Sm2PrivateKey
from registry.crypto.sm2 import signature_to_raw
from registry.models import TTL_ABSOLUTE, HandleValue
from registry.trust import (
    MAX_JWS_BYTES,
    Claims,
    ClaimsError,
    JwsError,
    KeyFormatError,
    Permission,
    Sm2PublicKey,
    compare,
    digests_claim,
    key_from_jwk,
    key_to_jwk,
    load_public_key,
    parse_jws,
    public_key_pem,
    same_key,
    sign_jws,
    value_digest,
)
from registry.trust.keys import b64url_encode
from registry.values import encode_value_content
from resolver.handle import codec
from tests.sm2_tools import gmalg_signs, gmalg_verifies, openssl_signs, openssl_verifies
from tests.trust_tools import (
    SM2_ID,
    dsa_key,
    independently_verifies,
    rfc3651_digest,
    rsa_key,
    sm2_key,
    url,
)

PAYLOAD = b'{"iss":"300:88.111.1/ent","sub":"88.111.1/item"}'


def _pem(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- signing and verifying, both ways, with independent tools ---------------------------


def test_our_rs256_verifies_in_pyjwt_and_theirs_in_ours() -> None:
    key = rsa_key()
    ours = sign_jws(PAYLOAD, key)
    assert ours.compact().startswith("eyJhbGciOiJSUzI1NiJ9.")  # exactly {"alg":"RS256"}
    assert jwt.PyJWS().decode(ours.compact(), _pem(key.public_key()), algorithms=["RS256"]) == (
        PAYLOAD
    )
    theirs = jwt.PyJWS().encode(PAYLOAD, key, algorithm="RS256")  # header also has "typ"
    parsed = parse_jws(theirs)
    assert parsed.header == {"alg": "RS256", "typ": "JWT"}
    assert parsed.verifies(key.public_key())
    assert not parsed.verifies(rsa_key(1).public_key())


def test_our_ds256_verifies_in_openssl_and_theirs_in_ours(tmp_path: Path) -> None:
    key = dsa_key()
    ours = sign_jws(PAYLOAD, key)
    assert ours.alg == "DS256"
    assert independently_verifies(ours.compact().encode(), key_to_jwk(key.public_key()))
    # A DS256 signature made by openssl over a header of our choosing.
    head = b64url_encode(b'{"alg":"DS256"}')
    body = b64url_encode(PAYLOAD)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "in.bin").write_bytes(f"{head}.{body}".encode())
    subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", "key.pem", "-out", "sig.der", "in.bin"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=30,
    )
    signature = b64url_encode((tmp_path / "sig.der").read_bytes())
    assert parse_jws(f"{head}.{body}.{signature}").verifies(key.public_key())


def test_our_sm2256_verifies_in_openssl_and_gmalg_and_theirs_in_ours(tmp_path: Path) -> None:
    key = sm2_key()
    public = key.public_key()
    ours = sign_jws(PAYLOAD, key)
    assert ours.protected == b64url_encode(b'{"alg":"SM2256"}')
    assert openssl_verifies(tmp_path, public.to_pem(), ours.signature, ours.signing_input, SM2_ID)
    raw = signature_to_raw(ours.signature)  # DER, as the IDIS SDK writes it
    assert gmalg_verifies(public.point, raw, ours.signing_input, SM2_ID.encode())
    assert independently_verifies(ours.compact().encode(), key_to_jwk(public))
    head, body = ours.protected, ours.payload_segment
    by_openssl = openssl_signs(tmp_path, key.to_pem(), f"{head}.{body}".encode(), SM2_ID)
    assert parse_jws(f"{head}.{body}.{b64url_encode(by_openssl)}").verifies(public)
    by_gmalg = gmalg_signs(key.to_bytes(), f"{head}.{body}".encode(), SM2_ID.encode())
    assert parse_jws(f"{head}.{body}.{b64url_encode(by_gmalg)}").verifies(public)  # raw r||s
    other_id = openssl_signs(tmp_path, key.to_pem(), f"{head}.{body}".encode(), "other-id")
    wrong = parse_jws(f"{head}.{body}.{b64url_encode(other_id)}")
    assert wrong.problem_with(public) == "SM2256 signature does not match"
    assert not ours.verifies(sm2_key(1).public_key())
    short = parse_jws(f"{head}.{body}.{b64url_encode(b'0' * 10)}")
    assert short.problem_with(public) == "SM2256 signature is neither DER (r, s) nor 64-byte r||s"


def test_received_segments_are_verified_as_they_came() -> None:
    """A header with spaces: re-encoding it would break the signature."""
    key = rsa_key()
    token = jwt.PyJWS().encode(PAYLOAD, key, algorithm="RS256", headers={"kid": "a b"})
    parsed = parse_jws(token.encode())
    assert parsed.compact() == token
    assert parsed.verifies(key.public_key())


def test_json_serialization_reads_and_writes_as_handle_net_does() -> None:
    key = rsa_key()
    compact = sign_jws(PAYLOAD, key)
    text = compact.json_serialization()
    assert json.loads(text) == {
        "payload": compact.payload_segment,
        "signatures": [{"protected": compact.protected, "signature": compact.signature_segment}],
    }
    parsed = parse_jws(text.encode())
    assert parsed.json_form and parsed.payload == PAYLOAD
    assert parsed.verifies(key.public_key())
    flattened = json.dumps(
        {
            "payload": compact.payload_segment,
            "protected": compact.protected,
            "signature": compact.signature_segment,
        }
    )
    assert parse_jws(flattened).verifies(key.public_key())


def test_a_tampered_payload_or_wrong_key_does_not_verify() -> None:
    key = rsa_key()
    good = sign_jws(PAYLOAD, key)
    forged = parse_jws(f"{good.protected}.{b64url_encode(PAYLOAD + b' ')}.{good.signature_segment}")
    assert forged.problem_with(key.public_key()) == "RS256 signature does not match"
    assert "needs a DSA key" in (
        parse_jws(sign_jws(PAYLOAD, dsa_key()).compact()).problem_with(key.public_key()) or ""
    )


# --- refusals ---------------------------------------------------------------------------


def _raw(header: bytes, payload: bytes = PAYLOAD, signature: bytes = b"\x01" * 256) -> str:
    return ".".join(b64url_encode(part) for part in (header, payload, signature))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_raw(b'{"alg":"none"}'), "alg 'none' is not accepted"),
        (_raw(b'{"alg":"HS256"}'), "alg 'HS256' is not accepted"),
        (_raw(b'{"alg":"ES256"}'), "alg 'ES256' is not accepted"),
        (_raw(b'{"typ":"JWT"}'), "no alg"),
        (_raw(b'{"alg":"RS256","crit":["x"]}'), "critical"),
        (_raw(b"[1]"), "not a JSON object"),
        (_raw(b"{not json"), "header is not JSON"),
        (_raw(b"[" * 5000 + b"]" * 5000), "header is not JSON"),
        ("a.b", "2 dot-separated parts"),
        ("a.b.c.d", "4 dot-separated parts"),
        (_raw(b'{"alg":"RS256"}').replace("eyJ", "ey+J", 1), "not base64url"),
        (_raw(b'{"alg":"RS256"}') + "==", "not base64url"),
        (_raw(b'{"alg":"RS256"}').replace(".", ".A", 1), "not base64url"),
        (_raw(b'{"alg":"RS256"}', signature=b""), "signature is empty"),
        ('{"payload":"e30"}', "no signatures"),
        ('{"payload":"e30","signatures":[]}', "no signatures"),
        ("[]", "1 dot-separated parts"),
        ("{", "not JSON"),
        (b"\xff\xfe.x.y", "not UTF-8"),
        ("x" * (MAX_JWS_BYTES + 1), f"at most {MAX_JWS_BYTES}"),
    ],
)
def test_malformed_jws_is_refused_with_its_reason(data: str | bytes, words: str) -> None:
    with pytest.raises(JwsError, match=None) as refused:
        parse_jws(data)
    assert words in str(refused.value)


def test_signatures_of_the_wrong_shape_say_so() -> None:
    rsa_public = rsa_key().public_key()
    short = parse_jws(_raw(b'{"alg":"RS256"}', signature=b"\x01" * 255))
    assert short.problem_with(rsa_public) == (
        "RS256 signature is 255 bytes; the signer's key makes 256"
    )
    not_der = parse_jws(_raw(b'{"alg":"DS256"}', signature=b"\x30\x03\x02\x01"))
    assert not_der.problem_with(dsa_key().public_key()) == "DS256 signature is not DER (r, s)"


# --- keys -------------------------------------------------------------------------------


def test_jwk_round_trips_and_matches_handle_net_layout() -> None:
    for key in (rsa_key().public_key(), dsa_key().public_key()):
        jwk = key_to_jwk(key)
        assert all("=" not in v and "+" not in v for v in jwk.values())
        assert same_key(key_from_jwk(jwk), key)
        assert same_key(load_public_key(public_key_pem(key)), key)
    assert key_to_jwk(rsa_key().public_key())["e"] == "AQAB"  # unsigned, no sign byte


def test_sm2_keys_in_both_jwk_forms_and_pem() -> None:
    point = bytes.fromhex(
        "04"
        "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
        "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
    )
    key = Sm2PublicKey(point)  # the GB/T 32918 example key
    jwk = key_to_jwk(key)
    assert jwk["kty"] == "SM2" and set(jwk) == {"kty", "d"}
    assert key_from_jwk(jwk) == key
    assert key_from_jwk({"kty": "SM2", "x": b64url_encode(point[1:33]),
                         "y": b64url_encode(point[33:])}) == key  # fmt: skip
    assert load_public_key(key.pem()) == key
    assert load_public_key(key.spki()) == key
    assert load_public_key(Sm2PrivateKey.generate().public_key().to_pem()) != key


@pytest.mark.parametrize(
    ("jwk", "words"),
    [
        ("RSA", "not a JSON object"),
        ({"n": "AQAB"}, "no kty"),
        ({"kty": "EC", "x": "AA"}, "unsupported publicKey kty 'EC'"),
        ({"kty": "RSA", "n": "AQAB"}, "lacks 'e'"),
        ({"kty": "RSA", "n": "!!", "e": "AQAB"}, "not base64url"),
        ({"kty": "RSA", "n": "", "e": "AQAB"}, "is empty"),
        ({"kty": "DSA", "y": "AQ", "p": "AQ", "q": "AQ", "g": "AQ"}, "not a key"),
        ({"kty": "SM2", "d": "AAAA"}, "not the SubjectPublicKeyInfo"),
        ({"kty": "SM2", "x": "AAAA", "y": "AAAA"}, "32-byte"),
        ({"kty": "SM2", "x": "AQ" * 21 + "A", "y": "AQ" * 21 + "A"}, "SM2 publicKey"),
    ],
)
def test_malformed_jwk_is_refused(jwk: object, words: str) -> None:
    with pytest.raises(KeyFormatError) as refused:
        key_from_jwk(jwk)
    assert words in str(refused.value)


def test_root_keys_of_other_kinds_are_refused() -> None:
    ec_pem = _pem(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(KeyFormatError, match="unsupported public key type"):
        load_public_key(ec_pem)
    with pytest.raises(KeyFormatError):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n")


# --- claims -----------------------------------------------------------------------------


def test_claims_round_trip_keeping_idis_fields() -> None:
    payload = json.dumps(
        {
            "iss": "301:88.111.1/0.0",
            "sub": "301:88.111.1/test",
            "exp": 1900000000,
            "nbf": 1.7e9,
            "iat": 1700000000,
            "perms": [{"perm": "everything"}, {"handle": "0.NA/88.111", "perm": "derivedPrefixes"}],
            "publicKey": key_to_jwk(rsa_key().public_key()),
            "org": "测试企业",
            "sn": "42",
            "exts": [{"key": "k", "value": "v"}],
        },
        ensure_ascii=False,
    ).encode()
    claims = Claims.from_json(payload)
    assert claims.nbf == 1700000000
    assert claims.perms == (Permission("everything"), Permission("derivedPrefixes", "0.NA/88.111"))
    assert claims.extra == {"org": "测试企业", "sn": "42", "exts": [{"key": "k", "value": "v"}]}
    again = Claims.from_json(claims.to_json())
    assert again == claims and again.extra == claims.extra


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"iss":5}', "iss is not a string"),
        (b'{"exp":"soon"}', "exp is not a number"),
        (b'{"exp":true}', "exp is not a number"),
        (b'{"exp":1.5}', "whole number"),
        (b'{"exp":1e300}', "out of range"),
        (b'{"perms":{}}', "perms is not a list"),
        (b'{"perms":[{"handle":"x"}]}', "no perm"),
        (b'{"digests":{"digests":[]}}', "digests has no alg"),
        (b'{"digests":{"alg":"SHA-256","digests":[{"index":"1","digest":"x"}]}}', "integer"),
        (b'{"chain":"x"}', "chain is not a list"),
        (b'{"publicKey":{"kty":"XYZ"}}', "publicKey: unsupported"),
    ],
)
def test_malformed_claims_are_refused(payload: bytes, words: str) -> None:
    with pytest.raises(ClaimsError) as refused:
        Claims.from_json(payload)
    assert words in str(refused.value)


# --- digests ----------------------------------------------------------------------------

_VALUES = st.builds(
    HandleValue,
    index=st.integers(1, 2**31 - 1),
    type=st.text(max_size=20),
    data=st.binary(max_size=200),
    ttl_type=st.sampled_from([0, TTL_ABSOLUTE]),
    ttl=st.integers(0, 2**32 - 1),
    timestamp=st.integers(0, 2**32 - 1),
    permissions=st.integers(0, 15),
    references=st.lists(st.tuples(st.text(max_size=20), st.integers(0, 2**32 - 1)), max_size=3).map(
        tuple
    ),
)


@settings(max_examples=200, deadline=None)
@given(_VALUES)
def test_value_digest_follows_rfc3651_without_index_and_timestamp(value: HandleValue) -> None:
    ours = base64.b64encode(value_digest(value)).decode()
    assert ours == rfc3651_digest(value)
    restamped = dataclasses.replace(value, index=value.index % 7 + 1, timestamp=0)
    assert value_digest(value) == value_digest(restamped)
    assert codec.encode_value(value)[8:] == codec.encode_value(restamped)[8:]
    assert codec.encode_value(value)[8:] == encode_value_content(value)


def test_compare_sorts_values_into_verified_bad_missing_unsigned() -> None:
    signed = [url(1, "a"), url(2, "b"), url(3, "c")]
    claim = digests_claim(signed)
    now = [url(1, "a"), url(2, "changed"), url(4, "new")]
    result = compare(now, claim)
    assert (result.verified, result.bad, result.missing, result.unsigned) == (
        (1,),
        (2,),
        (3,),
        (4,),
    )
    assert digests_claim(signed, "SM3").digests[0].digest != claim.digests[0].digest
    assert compare(signed, digests_claim(signed, "SM3")).verified == (1, 2, 3)
