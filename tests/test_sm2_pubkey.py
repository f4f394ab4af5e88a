"""SM2 keys in HS_PUBKEY values: the three forms IDIS software writes are read, the
one its SDK writes is written byte for byte, and broken ones are refused precisely."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import gmalg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from registry.crypto.sm2 import Sm2PrivateKey, Sm2PublicKey
from registry.values import ValueFormatError, decode_public_key, encode_public_key
from resolver.handle.credentials import SignedProof
from resolver.handle.proofs import public_key_proof
from tests.factories import needs
from tests.sm2_tools import OPENSSL, openssl_run, p256_spki


def lp(data: bytes) -> bytes:
    """A length-prefixed byte string, written here independently of the codec."""
    return struct.pack(">I", len(data)) + data


def wrapped(inner: bytes) -> bytes:
    """IDIS's binary HS_PUBKEY record around ``inner``."""
    return lp(b"SM2_PUB_KEY") + b"\x00\x00" + lp(inner)


def java_mime_pem(spki: bytes) -> bytes:
    """PEM as the IDIS SDK's KeyConverter.toX509Pem writes it: Java's MIME base64
    (76 columns, CRLF, none after the last line), then CRLF and the END line."""
    body = base64.encodebytes(spki).replace(b"\n", b"\r\n")  # 76 columns, like MIME
    return b"-----BEGIN PUBLIC KEY-----\r\n" + body + b"-----END PUBLIC KEY-----\r\n"


@pytest.fixture(scope="module")
def key() -> Sm2PrivateKey:
    return Sm2PrivateKey.generate()


def test_we_write_form_1_as_the_idis_sdk_does(key: Sm2PrivateKey) -> None:
    public = key.public_key()
    expected = lp(b"SM2_PUB_KEY") + b"\x00\x00" + lp(java_mime_pem(public.to_der()))
    assert encode_public_key(public) == expected
    pem = java_mime_pem(public.to_der())
    assert max(len(line) for line in pem.split(b"\r\n")) == 76 and b"\n" not in pem.replace(
        b"\r\n", b""
    )


@needs(OPENSSL is not None, "openssl")
def test_all_three_forms_read_as_the_same_key(tmp_path: Path, key: Sm2PrivateKey) -> None:
    (tmp_path / "key.pem").write_bytes(key.to_pem())
    openssl_pem = openssl_run(tmp_path, "pkey", "-in", "key.pem", "-pubout")
    openssl_der = openssl_run(tmp_path, "pkey", "-in", "key.pem", "-pubout", "-outform", "DER")
    forms = {
        "form 1, PEM in the wrapper": wrapped(java_mime_pem(openssl_der)),
        "form 1 with OpenSSL's PEM": wrapped(openssl_pem),
        "form 2, DER in the wrapper": wrapped(openssl_der),
        "form 3, bare PEM": openssl_pem,
        "form 3, bare PEM as Java writes it": java_mime_pem(openssl_der),
    }
    for name, data in forms.items():
        decoded = decode_public_key(data)
        assert isinstance(decoded, Sm2PublicKey), name
        assert decoded == key.public_key(), name
        # Decoding is reading only: the same bytes decode the same, nothing kept aside.
        assert decode_public_key(bytes(data)) == decoded


def test_rsa_still_reads_in_both_forms() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = rsa_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for data in (encode_public_key(rsa_key), pem):
        decoded = decode_public_key(data)
        assert isinstance(decoded, rsa.RSAPublicKey)
        assert decoded.public_numbers() == rsa_key.public_numbers()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (lp(b"SM2_PUB_KEY") + b"\x00\x00" + lp(b"garbage"), "SM2_PUB_KEY key is invalid"),
        (lp(b"SM2_PUB_KEY") + b"\x00\x00" + lp(p256_spki()), "is not SM2"),
        (lp(b"SM2_PUB_KEY") + b"\x00\x00" + b"\x00\x00\x01\x00abc", "ends early"),
        (lp(b"SM2_PUB_KEY") + b"\x00\x00" + lp(b"\x04" + bytes(64)), "not on the curve"),
        (
            lp(b"SM2_PUB_KEY") + b"\x00\x00" + lp(b"-----BEGIN PUBLIC KEY-----\r\nMFkw"),
            "truncated",
        ),
        (b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQg", "truncated"),
        (lp(b"SM9_PUB_KEY") + b"\x00\x00" + lp(b"x"), "unsupported HS_PUBKEY key type"),
    ],
)
def test_broken_sm2_values_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueFormatError, match=reason):
        decode_public_key(data)


def test_an_sm2_login_proof_as_the_idis_sdk_makes_it(key: Sm2PrivateKey) -> None:
    """The signature the proof carries: SM2 over SM3(nonce ‖ digest) as the message,
    the handle as user ID; gmalg (independent) agrees."""
    message = b"\x01" * 16 + b"\x02" * 32
    proof = SignedProof.from_bytes(public_key_proof(key, message, identity="88.111.1/admin"))
    assert proof.algorithm == b"SM3"
    r, s = _der_pair(proof.signature)
    verifier = gmalg.SM2(pk=key.public_key().point, uid=b"88.111.1/admin")
    assert verifier.verify(gmalg_sm3(message), r, s)
    assert not verifier.verify(message, r, s)  # M is the SM3 of nonce ‖ digest, not them
    with pytest.raises(ValueError, match="needs the identity"):
        public_key_proof(key, message)


def gmalg_sm3(data: bytes) -> bytes:
    hasher = gmalg.SM3()
    hasher.update(data)
    return bytes(hasher.value())


def _der_pair(signature: bytes) -> tuple[bytes, bytes]:
    """r and s (32 bytes each) of a DER SEQUENCE {r, s}, read here independently."""
    assert signature[0] == 0x30 and signature[1] == len(signature) - 2
    at = 2
    parts = []
    for _ in range(2):
        assert signature[at] == 0x02
        size = signature[at + 1]
        parts.append(int.from_bytes(signature[at + 2 : at + 2 + size], "big").to_bytes(32, "big"))
        at += 2 + size
    assert at == len(signature)
    return parts[0], parts[1]
