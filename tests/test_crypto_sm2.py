"""SM2 over the system's OpenSSL: known answers, every signature and ciphertext checked
by an independent implementation (the ``openssl`` tool, gmalg), key formats byte for
byte, and bad input refused precisely — never a crash."""

from __future__ import annotations

import ctypes
import gc
import threading
from pathlib import Path

import gmalg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.crypto import BadCiphertext, BadKey, CryptoError, sm2
from registry.crypto.der import integer as der_integer
from registry.crypto.der import sequence
from registry.crypto.sm2 import DEFAULT_ID, N, Sm2PrivateKey, Sm2PublicKey
from tests.factories import needs
from tests.sm2_tools import (
    OPENSSL,
    gmalg_signs,
    gmalg_verifies,
    openssl_run,
    openssl_signs,
    openssl_verifies,
    p256_spki,
)

# GB/T 32918.5-2017 annex (the recommended curve): key, message, and the signature
# made with k = 59276E27…, user ID 1234567812345678.
ANNEX_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
ANNEX_POINT = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
ANNEX_MESSAGE = b"message digest"
ANNEX_K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
ANNEX_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
ANNEX_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
# The same key, message and k under another ID (the one GB/T 32918.2's own example
# uses); r and s computed by gmalg 1.1.2, which reproduces the annex values above.
ALICE = b"ALICE123@YAHOO.COM"
ALICE_R = 0xB0E3E7D4AC2178F833AD73FA9D1191E41C76C8BFEDB5AD89040BA2E5184BDE58
ALICE_S = 0xCC8D096578F7DD2669AC1AC42F7E722BCFA42B9E0BE0B1B5DF7CA0B53FDD5750
IDENTITY = "88.111.1/admin"

needs_openssl = needs(OPENSSL is not None, "openssl")


def raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def der(r: int, s: int) -> bytes:
    return sequence(der_integer(r), der_integer(s))


@pytest.fixture(scope="module")
def annex() -> Sm2PrivateKey:
    return Sm2PrivateKey(ANNEX_D)


# --- known answers -------------------------------------------------------------------


def test_the_annex_key_gives_the_annex_public_point(annex: Sm2PrivateKey) -> None:
    assert annex.public_key().point == ANNEX_POINT
    assert annex.public_key().xy == ANNEX_POINT[1:]


@pytest.mark.parametrize(
    ("user_id", "r", "s"), [(DEFAULT_ID, ANNEX_R, ANNEX_S), (ALICE, ALICE_R, ALICE_S)]
)
def test_the_known_signatures_verify_raw_and_der(
    annex: Sm2PrivateKey, user_id: bytes, r: int, s: int
) -> None:
    public = annex.public_key()
    assert public.verify(raw(r, s), ANNEX_MESSAGE, user_id)
    assert public.verify(der(r, s), ANNEX_MESSAGE, user_id)
    assert not public.verify(raw(r, s), ANNEX_MESSAGE + b"!", user_id)
    assert not public.verify(raw(r, s), ANNEX_MESSAGE, b"1234567812345679")
    assert not public.verify(raw(r, s ^ 1), ANNEX_MESSAGE, user_id)


def test_gmalg_reproduces_the_annex_signature_and_the_custom_id_one() -> None:
    """The known answers for the custom ID come from gmalg: it must get the annex right."""
    for user_id, r, s in [(DEFAULT_ID, ANNEX_R, ANNEX_S), (ALICE, ALICE_R, ALICE_S)]:
        signer = gmalg.SM2(sk=ANNEX_D.to_bytes(32, "big"), uid=user_id, rnd_fn=lambda _: ANNEX_K)
        assert signer.sign(ANNEX_MESSAGE) == (r.to_bytes(32, "big"), s.to_bytes(32, "big"))


def test_the_default_id_is_set_explicitly(annex: Sm2PrivateKey) -> None:
    """OpenSSL 3.0's own default is the empty ID: a signature under it must not verify."""
    empty_id = annex.sign(ANNEX_MESSAGE, b"")
    assert annex.public_key().verify(empty_id, ANNEX_MESSAGE, b"")
    assert not annex.public_key().verify(empty_id, ANNEX_MESSAGE)


@needs_openssl
def test_openssl_verifies_the_known_signatures(tmp_path: Path, annex: Sm2PrivateKey) -> None:
    pem = annex.public_key().to_pem()
    assert openssl_verifies(tmp_path, pem, der(ANNEX_R, ANNEX_S), ANNEX_MESSAGE, DEFAULT_ID)
    assert openssl_verifies(tmp_path, pem, der(ALICE_R, ALICE_S), ANNEX_MESSAGE, ALICE)
    assert not openssl_verifies(tmp_path, pem, der(ALICE_R, ALICE_S), ANNEX_MESSAGE, DEFAULT_ID)


# --- our signatures, checked by others; theirs by us ------------------------------------


@needs_openssl
@pytest.mark.parametrize("user_id", [DEFAULT_ID, IDENTITY, "用户/标识"])
def test_openssl_and_gmalg_verify_what_we_sign(tmp_path: Path, user_id: str | bytes) -> None:
    key = Sm2PrivateKey.generate()
    identity = user_id.encode() if isinstance(user_id, str) else user_id
    data = b"nonce and digest \x00\xff" * 3
    signature = key.sign(data, user_id)
    raw_signature = key.sign(data, user_id, raw=True)
    assert len(raw_signature) == 64
    pem = key.public_key().to_pem()
    assert openssl_verifies(tmp_path, pem, signature, data, identity)
    assert openssl_verifies(tmp_path, pem, sm2.signature_to_der(raw_signature), data, identity)
    assert not openssl_verifies(tmp_path, pem, signature, data + b"x", identity)
    assert gmalg_verifies(key.public_key().point, raw_signature, data, identity)
    assert gmalg_verifies(key.public_key().point, sm2.signature_to_raw(signature), data, identity)
    assert not gmalg_verifies(key.public_key().point, raw_signature, data, identity + b"x")


@needs_openssl
def test_we_verify_what_openssl_and_gmalg_sign(tmp_path: Path) -> None:
    key = Sm2PrivateKey.generate()
    public = key.public_key()
    data = b"signed elsewhere"
    by_openssl = openssl_signs(tmp_path, key.to_pem(), data, IDENTITY)
    by_gmalg = gmalg_signs(key.to_bytes(), data, IDENTITY.encode())
    for signature in (by_openssl, by_gmalg):
        assert public.verify(signature, data, IDENTITY)
        assert not public.verify(signature, data, DEFAULT_ID)
        assert not Sm2PrivateKey.generate().public_key().verify(signature, data, IDENTITY)


# --- encryption -------------------------------------------------------------------------


def test_encryption_round_trips_in_both_layouts() -> None:
    key = Sm2PrivateKey.generate()
    plaintext = b"\x00\x00\x00\x04" + bytes(range(16))
    ciphertext = key.public_key().encrypt(plaintext)
    assert ciphertext[0] == 4 and len(ciphertext) == 1 + 64 + 32 + len(plaintext)
    assert key.decrypt(ciphertext) == plaintext
    asn1 = key.public_key().encrypt_asn1(plaintext)
    assert asn1[0] == 0x30 and key.decrypt(asn1) == plaintext
    assert sm2.ciphertext_to_asn1(sm2.ciphertext_to_raw(asn1)) == asn1


def test_gmalg_decrypts_ours_and_we_decrypt_gmalgs() -> None:
    """gmalg writes and reads raw 04‖C1‖C3‖C2, as the IDIS SDK does."""
    key = Sm2PrivateKey.generate()
    plaintext = b"session key for SM4"
    ours = key.public_key().encrypt(plaintext)
    assert gmalg.SM2(sk=key.to_bytes()).decrypt(ours) == plaintext
    theirs = gmalg.SM2(pk=key.public_key().point).encrypt(plaintext)
    assert key.decrypt(theirs) == plaintext


@needs_openssl
def test_openssl_ciphertexts_decrypt_and_ours_decrypt_in_openssl(tmp_path: Path) -> None:
    key = Sm2PrivateKey.generate()
    (tmp_path / "key.pem").write_bytes(key.to_pem())
    (tmp_path / "pub.pem").write_bytes(key.public_key().to_pem())
    (tmp_path / "plain.bin").write_bytes(b"made by openssl pkeyutl")
    openssl_run(
        tmp_path,
        *("pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "plain.bin"),
        *("-out", "ct.bin"),
    )
    assert key.decrypt((tmp_path / "ct.bin").read_bytes()) == b"made by openssl pkeyutl"
    assert key.decrypt(sm2.ciphertext_to_raw((tmp_path / "ct.bin").read_bytes()))
    (tmp_path / "ours.bin").write_bytes(key.public_key().encrypt_asn1(b"made by us"))
    out = openssl_run(tmp_path, "pkeyutl", "-decrypt", "-inkey", "key.pem", "-in", "ours.bin")
    assert out == b"made by us"


def test_a_tampered_or_foreign_ciphertext_is_refused() -> None:
    key = Sm2PrivateKey.generate()
    ciphertext = bytearray(key.public_key().encrypt(b"sixteen byte key"))
    with pytest.raises(BadCiphertext):
        Sm2PrivateKey.generate().decrypt(bytes(ciphertext))
    ciphertext[-1] ^= 1  # C2 changed: C3 no longer matches
    with pytest.raises(BadCiphertext):
        key.decrypt(bytes(ciphertext))
    ciphertext[5] ^= 1  # C1 off the curve
    with pytest.raises(BadCiphertext):
        key.decrypt(bytes(ciphertext))
    for broken in (b"", b"\x04" + bytes(96), b"\x30\x03\x02\x01", b"\x07" + bytes(120)):
        with pytest.raises(BadCiphertext):
            key.decrypt(broken)
    with pytest.raises(CryptoError):
        key.public_key().encrypt(b"")


# --- key formats ------------------------------------------------------------------------


@needs_openssl
def test_keys_from_openssl_load_and_write_back_byte_for_byte(tmp_path: Path) -> None:
    openssl_run(tmp_path, "genpkey", "-algorithm", "SM2", "-out", "pkcs8.pem")
    openssl_run(tmp_path, "pkey", "-in", "pkcs8.pem", "-pubout", "-out", "pub.pem")
    openssl_run(
        tmp_path, "pkcs8", "-topk8", "-nocrypt", "-in", "pkcs8.pem", "-outform", "DER",
        "-out", "pkcs8.der",
    )  # fmt: skip
    openssl_run(tmp_path, "pkey", "-in", "pkcs8.pem", "-pubout", "-outform", "DER", "-out", "p.der")
    openssl_run(tmp_path, "ec", "-in", "pkcs8.pem", "-out", "sec1.pem")
    openssl_run(tmp_path, "ec", "-in", "pkcs8.pem", "-outform", "DER", "-out", "sec1.der")
    files = {name: (tmp_path / name).read_bytes() for name in (
        "pkcs8.pem", "pub.pem", "pkcs8.der", "p.der", "sec1.pem", "sec1.der"
    )}  # fmt: skip
    assert b"SM2 PRIVATE KEY" in files["sec1.pem"]
    private = Sm2PrivateKey.load(files["pkcs8.pem"])
    public = Sm2PublicKey.load(files["pub.pem"])
    assert private.public_key() == public
    for name in ("pkcs8.der", "sec1.pem", "sec1.der"):
        assert Sm2PrivateKey.load(files[name]).to_bytes() == private.to_bytes(), name
    assert Sm2PublicKey.load(files["p.der"]) == public
    assert private.to_pem() == files["pkcs8.pem"]
    assert private.to_der() == files["pkcs8.der"]
    assert public.to_pem() == files["pub.pem"]
    assert public.to_der() == files["p.der"]


def test_public_keys_load_from_raw_points_in_every_form() -> None:
    public = Sm2PrivateKey.generate().public_key()
    x, y = public.point[1:33], public.point[33:]
    compressed = bytes([2 + (y[-1] & 1)]) + x
    for form in (public.point, public.xy, compressed, public.to_der(), public.to_pem()):
        assert Sm2PublicKey.load(form) == public
    assert Sm2PublicKey.from_pem(public.to_pem(width=76, newline=b"\r\n").decode()) == public
    assert Sm2PrivateKey.from_bytes(Sm2PrivateKey(ANNEX_D).to_bytes()).to_bytes() == (
        ANNEX_D.to_bytes(32, "big")
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (ANNEX_POINT[:-1] + bytes([ANNEX_POINT[-1] ^ 1]), "not on the curve"),
        (b"\x04" + bytes(64), "not on the curve"),
        (b"\x04" + b"\xff" * 64, "not on the curve"),
        (ANNEX_POINT[:40], "SM2 point of 40 bytes"),
        (b"\x05" + ANNEX_POINT[1:], "SM2 point of 65 bytes"),
        (p256_spki(), "curve 1.2.840.10045.3.1.7 is not SM2"),
        (
            Sm2PrivateKey(ANNEX_D).public_key().to_der().replace(b"\x82\x2d", b"\x82\x2e"),
            "is not SM2",
        ),
        (Sm2PrivateKey(ANNEX_D).public_key().to_der() + b"\x00", "1 bytes after the end"),
        (Sm2PrivateKey(ANNEX_D).public_key().to_pem()[:-30], "truncated"),
        (b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", "base64"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "expected PUBLIC"),
        (b"", "SM2 point of 0 bytes"),
    ],
)
def test_bad_public_keys_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadKey, match=reason):
        Sm2PublicKey.load(data)


def test_bad_private_keys_are_refused_with_the_reason() -> None:
    good = Sm2PrivateKey(ANNEX_D).to_der()
    other_point = Sm2PrivateKey.generate().public_key().point
    mismatched = good.replace(Sm2PrivateKey(ANNEX_D).public_key().point, other_point)
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cases = [
        (mismatched, "does not match"),
        (p256, "curve 1.2.840.10045.3.1.7 is not SM2"),
        (good[:-5], "truncated"),
        (Sm2PrivateKey(ANNEX_D).to_pem()[:50], "truncated"),
        (bytes(31), "expected"),
    ]
    for data, reason in cases:
        with pytest.raises(BadKey, match=reason):
            Sm2PrivateKey.load(data)
    for scalar in (0, N - 1, N, N + 5):
        with pytest.raises(BadKey, match="out of range"):
            Sm2PrivateKey(scalar)


# --- bad signatures ---------------------------------------------------------------------


def test_malformed_or_out_of_range_signatures_are_false(annex: Sm2PrivateKey) -> None:
    public = annex.public_key()
    good = der(ANNEX_R, ANNEX_S)
    assert public.verify(good, ANNEX_MESSAGE)
    bad = [
        raw(0, ANNEX_S),
        raw(ANNEX_R, 0),
        raw(ANNEX_R, N),
        raw(N, ANNEX_S),
        raw(2**256 - 1, ANNEX_S),
        der(0, ANNEX_S),
        der(ANNEX_R, N),
        der(ANNEX_R, ANNEX_S + N),
        raw(ANNEX_R, ANNEX_S)[:63],
        raw(ANNEX_R, ANNEX_S) + b"\x00",
        good + b"\x00",
        good[:-1],
        b"\x30\x81" + good[1:],  # a length not in its shortest form
        good[:2] + b"\x02\x21\x00" + good[4:],  # a needless leading zero
        b"",
    ]
    for signature in bad:
        assert not public.verify(signature, ANNEX_MESSAGE), signature.hex()
    for signature in (raw(0, 1), raw(1, N)):
        with pytest.raises(CryptoError, match="out of range"):
            sm2.signature_to_der(signature)
    with pytest.raises(CryptoError):
        sm2.signature_to_raw(good + b"\x00")
    with pytest.raises(CryptoError, match="longer than"):
        annex.sign(b"x", b"i" * 8192)


# --- resources and threads -----------------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost",
    )]  # fmt: skip


def _allocated_bytes() -> int:
    """Bytes malloc has handed out and not had back (glibc's mallinfo2): OpenSSL's
    allocations included, to the byte, whatever the allocator keeps in reserve."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc 2.33+")
def test_nothing_leaks_over_thousands_of_operations() -> None:
    """Every OpenSSL object is freed, on success and on failure (the error queue too)."""
    key = Sm2PrivateKey.generate()
    pem = key.to_pem()
    ciphertext = key.public_key().encrypt(b"k" * 20)

    def round_of_work(n: int) -> None:
        for i in range(n):
            loaded = Sm2PrivateKey.load(pem)
            signature = loaded.sign(b"data %d" % i, IDENTITY)
            assert loaded.public_key().verify(signature, b"data %d" % i, IDENTITY)
            assert not loaded.public_key().verify(signature, b"other", IDENTITY)
            assert loaded.decrypt(ciphertext) == b"k" * 20
            with pytest.raises(BadCiphertext):
                loaded.decrypt(ciphertext[:-1] + b"\x00")

    round_of_work(200)  # allocator and OpenSSL caches warm up
    gc.collect()
    before = _allocated_bytes()
    round_of_work(1000)
    gc.collect()
    grown = _allocated_bytes() - before
    # The smallest OpenSSL object made per round (a digest context) is some 50 bytes:
    # leaking any one of them would add 50 kB or more.
    assert grown < 20_000, f"{grown} bytes more allocated after 1000 rounds"


def test_keys_are_shared_safely_between_threads() -> None:
    key = Sm2PrivateKey.generate()
    public = key.public_key()
    failures: list[str] = []

    def work(worker: int) -> None:
        for i in range(150):
            data = f"{worker}:{i}".encode()
            signature = key.sign(data, IDENTITY)
            if not public.verify(signature, data, IDENTITY) or public.verify(
                signature, data + b"!", IDENTITY
            ):
                failures.append(data.decode())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
