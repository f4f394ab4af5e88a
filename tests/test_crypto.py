"""The cryptography module's hashes, ciphers and uniform keys: known answers from the
standards, and each result checked by the ``openssl`` tool or gmalg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import gmalg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from registry.crypto import BadKey, CryptoError, keys
from registry.crypto.ciphers import (
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    cbc_decrypt,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_ecb_block,
)
from registry.crypto.digests import digest, hash_by_name, hash_name, hmac, hmac_matches, sm3
from registry.crypto.errors import BadCiphertext
from registry.crypto.sm2 import Sm2PrivateKey, Sm2PublicKey
from tests.factories import needs
from tests.sm2_tools import OPENSSL, openssl_run, openssl_verifies

needs_openssl = needs(OPENSSL is not None, "openssl")

# --- SM3, hashes by name, HMAC ----------------------------------------------------------


def test_sm3_known_answers() -> None:
    """GB/T 32905 examples 1 and 2."""
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )
    reference = gmalg.SM3()
    reference.update(b"\x00\x01" * 100)
    assert sm3(b"\x00\x01" * 100) == reference.value()


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        (b"SHA-256", "sha256"),
        (b"SHA256", "sha256"),
        (b"sha-256", "sha256"),
        (b"SHA1", "sha1"),
        (b"SHA-1", "sha1"),
        (b"SHA-512", "sha512"),
        (b"SHA512", "sha512"),
        (b"SM3", "sm3"),
        ("SM3", "sm3"),
        (b"\x02", "sha1"),
        (b"\x03", "sha256"),
    ],
)
def test_hashes_by_the_names_protocols_write(name: bytes | str, algorithm: str) -> None:
    found = hash_by_name(name)
    assert found is not None and found.name == algorithm


@pytest.mark.parametrize("name", [b"MD5", b"\x01", b"SHA-3", b"", b"SM2"])
def test_unknown_hash_names_are_none(name: bytes) -> None:
    assert hash_by_name(name) is None
    with pytest.raises(CryptoError, match="unknown hash"):
        digest(name, b"x")


def test_hash_names_as_written() -> None:
    assert hash_name(hashes.SHA256()) == b"SHA-256"
    assert hash_name(hashes.SHA1()) == b"SHA1"
    assert hash_name(hashes.SM3()) == b"SM3"
    with pytest.raises(CryptoError):
        hash_name(hashes.MD5())


@needs_openssl
@pytest.mark.parametrize("name", ["SM3", "SHA-256", "SHA1"])
def test_hmac_matches_openssl(tmp_path: Path, name: str) -> None:
    key, data = b"session key 0123", b"message to authenticate"
    (tmp_path / "data.bin").write_bytes(data)
    digest_name = {"SM3": "sm3", "SHA-256": "sha256", "SHA1": "sha1"}[name]
    out = openssl_run(
        tmp_path, "dgst", f"-{digest_name}", "-mac", "HMAC", "-macopt", f"hexkey:{key.hex()}",
        "-r", "data.bin",
    )  # fmt: skip
    expected = bytes.fromhex(out.split()[0].decode())
    assert hmac(name, key, data) == expected
    assert hmac_matches(name, key, data, expected)
    assert not hmac_matches(name, key, data + b"!", expected)


# --- SM4 and AES -------------------------------------------------------------------------

SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def test_sm4_standard_example() -> None:
    """GB/T 32907 example 1: the key encrypting itself."""
    assert sm4_ecb_block(SM4_KEY, SM4_KEY).hex() == "681edf34d206965e86b3e94f536e4246"
    assert gmalg.SM4(SM4_KEY).encrypt(SM4_KEY).hex() == "681edf34d206965e86b3e94f536e4246"


@needs_openssl
@pytest.mark.parametrize(
    ("cipher", "key", "tool"),
    [("SM4", SM4_KEY, "sm4-cbc"), ("AES", bytes(range(16)), "aes-128-cbc"),
     ("AES", bytes(range(32)), "aes-256-cbc")],
)  # fmt: skip
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100])
def test_cbc_matches_openssl_both_ways(
    tmp_path: Path, cipher: str, key: bytes, tool: str, size: int
) -> None:
    iv = bytes(range(100, 116))
    plaintext = bytes(range(size))
    ours = (sm4_cbc_encrypt if cipher == "SM4" else aes_cbc_encrypt)(key, iv, plaintext)
    (tmp_path / "plain.bin").write_bytes(plaintext)
    theirs = openssl_run(
        tmp_path, "enc", f"-{tool}", "-K", key.hex(), "-iv", iv.hex(), "-in", "plain.bin",
    )  # fmt: skip
    assert ours == theirs
    assert len(ours) == (size // 16 + 1) * 16  # PKCS#7 always pads
    decrypt = sm4_cbc_decrypt if cipher == "SM4" else aes_cbc_decrypt
    assert decrypt(key, iv, theirs) == plaintext


def test_cbc_refuses_bad_ciphertexts_and_parameters() -> None:
    iv = bytes(16)
    good = sm4_cbc_encrypt(SM4_KEY, iv, b"attack at dawn")
    for broken in (b"", good[:-1], good + b"\x00", good[:-16] + bytes(16)):
        with pytest.raises(BadCiphertext, match="does not decrypt"):
            sm4_cbc_decrypt(SM4_KEY, iv, broken)
    with pytest.raises(BadCiphertext):
        sm4_cbc_decrypt(bytes(16), iv, good)  # wrong key: the padding does not check out
    with pytest.raises(CryptoError, match="SM4 key of 32 bytes"):
        sm4_cbc_encrypt(bytes(32), iv, b"x")
    with pytest.raises(CryptoError, match="IV of 8 bytes"):
        aes_cbc_encrypt(bytes(16), bytes(8), b"x")
    with pytest.raises(CryptoError, match="unknown cipher"):
        cbc_decrypt("DES", bytes(8), iv, good)


# --- every key kind behind one API -------------------------------------------------------


def _keys() -> dict[str, keys.PrivateKey]:
    return {
        "RSA": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "DSA": dsa.generate_private_key(2048),
        "EC": ec.generate_private_key(ec.SECP256R1()),
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
        "SM2": Sm2PrivateKey.generate(),
    }


@pytest.fixture(scope="module")
def every_kind() -> dict[str, keys.PrivateKey]:
    return _keys()


@needs_openssl
@pytest.mark.parametrize("kind", ["RSA", "DSA", "EC", "Ed25519", "SM2"])
def test_each_kind_loads_signs_and_openssl_verifies(
    tmp_path: Path, every_kind: dict[str, keys.PrivateKey], kind: str
) -> None:
    key = every_kind[kind]
    pem = keys.private_pem(key)
    loaded = keys.load_private_key(pem)
    assert keys.kind(loaded) == kind
    public = keys.load_public_key(keys.public_pem(keys.public_key_of(key)))
    assert keys.load_public_key(keys.public_der(public)) is not None
    algorithm = hashes.SM3() if kind == "SM2" else hashes.SHA256()
    data = b"one API for every key"
    signature = keys.sign(loaded, data, algorithm)
    assert keys.verify(public, signature, data, algorithm)
    assert not keys.verify(public, signature, data + b"!", algorithm)
    assert not keys.verify(public, signature[:-1] + bytes([signature[-1] ^ 1]), data, algorithm)
    pub_pem = keys.public_pem(public)
    if kind == "SM2":
        assert openssl_verifies(tmp_path, pub_pem, signature, data, b"1234567812345678")
        return
    (tmp_path / "pub.pem").write_bytes(pub_pem)
    (tmp_path / "sig.bin").write_bytes(signature)
    (tmp_path / "data.bin").write_bytes(data)
    command = ["pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "data.bin"]
    command += ["-sigfile", "sig.bin"] + ([] if kind == "Ed25519" else ["-digest", "sha256"])
    assert OPENSSL is not None
    done = subprocess.run([OPENSSL, *command], cwd=tmp_path, capture_output=True, check=False)
    assert b"Signature Verified Successfully" in done.stdout, done.stderr


def test_sm2_with_the_uniform_api_binds_the_user_id(
    every_kind: dict[str, keys.PrivateKey],
) -> None:
    key = every_kind["SM2"]
    public = keys.public_key_of(key)
    signature = keys.sign(key, b"data", user_id="88.111.1/admin")
    assert keys.verify(public, signature, b"data", hashes.SM3(), user_id="88.111.1/admin")
    assert not keys.verify(public, signature, b"data", hashes.SM3())
    assert not keys.verify(public, signature, b"data", hashes.SHA256(), user_id="88.111.1/admin")
    with pytest.raises(CryptoError, match="SM2 signs with SM3"):
        keys.sign(key, b"data", hashes.SHA256())
    with pytest.raises(CryptoError, match="do not sign with SM3"):
        keys.sign(every_kind["RSA"], b"data", hashes.SM3())


def test_sm2_keys_are_recognised_in_every_container(
    every_kind: dict[str, keys.PrivateKey],
) -> None:
    key = every_kind["SM2"]
    assert isinstance(key, Sm2PrivateKey)
    for data in (key.to_pem(), key.to_der()):
        assert isinstance(keys.load_private_key(data), Sm2PrivateKey)
    for data in (key.public_key().to_pem(), key.public_key().to_der()):
        assert isinstance(keys.load_public_key(data), Sm2PublicKey)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a usable"),
        (b"-----BEGIN PUBLIC KEY-----\nMIIB", "truncated"),
        (b"\x30\x03\x02\x01\x00", "not a usable"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a usable"),
    ],
)
def test_unusable_keys_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadKey, match=reason):
        keys.load_public_key(data)
    with pytest.raises(BadKey):
        keys.load_private_key(data)
