"""Certified (CT) answers that every client version can verify: the signature's
hash follows the answer's version as HANDLE.NET's does, the credential is laid out
as HANDLE.NET lays it (checked against a captured CNRI session), and the server's
key may be RSA or a DSA key brought from HANDLE.NET. Signatures are checked twice:
by our verifier, and by the ``openssl`` tool over bytes cut from the wire."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from idnode.config import Config
from idnode.listen import StartupError
from idnode.site import configured_site, load_server_key
from registry.secrets import ServerKey, create_private_file, load_or_create_server_key
from registry.services import Actor, Registry
from registry.values import SiteInfo, decode_public_key, encode_public_key
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle.proofs import (
    PublicKey,
    public_key_proof,
    sign_response,
    signature_hash,
    verify_public_key_proof,
    verify_response,
)
from tests import vectors
from tests.factories import needs
from tests.native_node import native_server, seed

# cryptography deprecates DSA for new designs; HANDLE.NET's site keys are DSA.
pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")

SESSION = vectors.load("cnri-homena-session.json")["messages"]
OPENSSL = shutil.which("openssl")


def captured(n: int) -> c.Message:
    return c.Message.from_bytes(bytes.fromhex(SESSION[n]["hex"]))


def cnri_site_key() -> PublicKey:
    """The reference server's DSA key, from the site info it answered with."""
    return decode_public_key(SiteInfo.from_bytes(captured(1).body).servers[0].public_key)


def pem(key: ServerKey | ec.EllipticCurvePrivateKey, form: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


@pytest.fixture(scope="module")
def keys() -> dict[str, ServerKey]:
    # DSA 1024 with a 160-bit q: the size of HANDLE.NET's site keys (as in the capture).
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "dsa": dsa.generate_private_key(key_size=1024),
    }


# --- the credential, against HANDLE.NET's own ---------------------------------------


def test_captured_credentials_decode_and_encode_back_byte_for_byte() -> None:
    for n in (1, 3):  # site info over TCP at 2.3, session setup over UDP at 2.5
        message = captured(n)
        credential = cred.Credential.from_bytes(message.credential)
        assert credential.signature_type == b"HS_SIGNED"
        assert credential.digest_algorithm == b"SHA1"  # not "SHA-1", not "SHA-256"
        assert (credential.signer_handle, credential.signer_index) == (b"", 0)
        assert credential.to_bytes() == message.credential


def test_our_credential_is_laid_out_as_handle_nets(keys: dict[str, ServerKey]) -> None:
    theirs = captured(1)
    answer = c.Message(theirs.envelope, theirs.header, theirs.body)
    ours = sign_response(answer, keys["dsa"])
    mine = cred.Credential.from_bytes(ours.credential)
    reference = cred.Credential.from_bytes(theirs.credential)
    for field in ("signature_type", "digest_algorithm", "signer_handle", "signer_index"):
        assert getattr(mine, field) == getattr(reference, field), field
    # Field by field on the bytes: version, reserved, flags, signer handle and index,
    # type, then the section (name, signature) whose length covers exactly those two.
    section = 4 + 4 + len(b"HS_SIGNED") + 4 + 4 + 4  # up to the section length
    assert ours.credential[: section - 4] == theirs.credential[: section - 4]
    for raw in (ours.credential, theirs.credential):
        length = int.from_bytes(raw[section - 4 : section], "big")
        assert length == len(raw) - section
        assert raw[section : section + 8] == b"\x00\x00\x00\x04SHA1"
        signature_length = int.from_bytes(raw[section + 8 : section + 12], "big")
        assert section + 12 + signature_length == len(raw)
        assert raw[section + 12 : section + 14] == b"\x30" + bytes([signature_length - 2])


def test_captured_signatures_verify_with_the_published_dsa_key() -> None:
    key = cnri_site_key()
    assert isinstance(key, dsa.DSAPublicKey)
    for n in (1, 3):
        message = captured(n)
        assert verify_response(message, key)
        flipped = replace(message, body=message.body[:-1] + bytes([message.body[-1] ^ 1]))
        assert not verify_response(flipped, key)


def test_dsa_public_key_record_is_handle_nets() -> None:
    site = SiteInfo.from_bytes(captured(1).body)
    published = site.servers[0].public_key
    assert published.startswith(b"\x00\x00\x00\x0bDSA_PUB_KEY\x00\x00")
    key = decode_public_key(published)
    assert isinstance(key, dsa.DSAPublicKey)
    assert encode_public_key(key) == published


def test_client_proofs_name_the_hash_their_version_knows(keys: dict[str, ServerKey]) -> None:
    # HANDLE.NET's own HS_PUBKEY answer at 2.5 (a DSA identity) names SHA1.
    answer = cred.ChallengeAnswer.from_bytes(captured(6).body)
    assert cred.SignedProof.from_bytes(answer.signed_response).algorithm == b"SHA1"
    message = b"n" * 16 + b"d" * 20
    expected = {
        ("rsa", (2, 5)): b"SHA1",
        ("rsa", (2, 7)): b"SHA-256",
        ("dsa", (2, 7)): b"SHA1",
        ("dsa", (2, 11)): b"SHA-256",
    }
    for (kind, version), name in expected.items():
        key = keys[kind]
        proof = public_key_proof(key, message, version)
        assert cred.SignedProof.from_bytes(proof).algorithm == name, (kind, version)
        assert verify_public_key_proof(encode_public_key(key.public_key()), proof, message)
    # HS_SECKEY: PBKDF2 (code 0x22) from 2.7, SHA-1 (code 2) before.
    secret = cl.SecretKey("0.NA/88.100", 300, b"secret")
    assert secret.answer(b"n" * 16, b"d" * 20, (2, 5)).signed_response[0] == cred.MAC_SHA1
    assert secret.answer(b"n" * 16, b"d" * 32).signed_response[0] == cred.MAC_PBKDF2_HMAC_SHA1


def test_signed_bytes_by_version() -> None:
    body = b"answer"
    for version, suggested in (((2, 5), (0, 0)), ((2, 6), (2, 11)), ((2, 7), (2, 11))):
        message = c.Message(
            c.Envelope(
                major=version[0],
                minor=version[1],
                suggested_major=suggested[0],
                suggested_minor=suggested[1],
                session_id=0x01020304,
                request_id=0x0A0B0C0D,
            ),
            c.Header(opcode=1, response_code=1),
            body,
        )
        part = message.signed_part
        covered = cred.signed_bytes(message, 7)
        if version == (2, 5):
            assert covered == part
        elif version == (2, 6):
            # HANDLE.NET 2.6: each int4 written over the previous one, 14 bytes in all.
            assert covered == b"\x02\x06\x01\x02" + struct.pack(">I", 7) + bytes(6) + part
        else:
            assert covered == b"\x02\x07" + struct.pack(">III", 0x01020304, 0x0A0B0C0D, 7) + part
    at_2_8 = c.Message(
        c.Envelope(major=2, minor=8, suggested_major=2, suggested_minor=11, request_id=9),
        c.Header(opcode=1, response_code=1),
        body,
    )
    assert cred.signed_bytes(at_2_8) == (
        b"\x02\x08\x02\x0b" + struct.pack(">III", 0, 9, 0) + at_2_8.signed_part
    )


def test_a_session_counter_in_the_credential_is_covered(keys: dict[str, ServerKey]) -> None:
    message = c.Message(
        c.Envelope(major=2, minor=11, suggested_major=2, suggested_minor=11, request_id=3),
        c.Header(opcode=1, response_code=1),
        b"answer",
    )
    key = keys["rsa"]
    assert isinstance(key, rsa.RSAPrivateKey)
    name, algorithm = signature_hash(key, (2, 11))
    signature = key.sign(cred.signed_bytes(message, 5), padding.PKCS1v15(), algorithm)
    counted = cred.Credential(digest_algorithm=name, signature=signature, signer_index=5)
    assert verify_response(replace(message, credential=counted.to_bytes()), key.public_key())
    uncounted = replace(counted, signer_index=0)
    assert not verify_response(replace(message, credential=uncounted.to_bytes()), key.public_key())


# --- the key file -------------------------------------------------------------------


def key_file(directory: Path, key: ServerKey, form: serialization.PrivateFormat) -> Path:
    path = directory / "server.pem"
    assert create_private_file(path, pem(key, form))
    return path


@pytest.mark.parametrize(
    "form", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_a_dsa_key_file_loads_and_is_what_hs_site_publishes(
    keys: dict[str, ServerKey], tmp_path: Path, form: serialization.PrivateFormat
) -> None:
    key = keys["dsa"]
    path = key_file(tmp_path, key, form)
    loaded = load_or_create_server_key(path)
    assert isinstance(loaded, dsa.DSAPrivateKey)
    assert loaded.private_numbers() == key.private_numbers()
    assert path.read_bytes() == pem(key, form)  # kept as it was, not replaced by a new key
    site = SiteInfo.from_bytes(configured_site(Config(server_key_file=str(path))))
    published = site.servers[0].public_key
    assert published.startswith(b"\x00\x00\x00\x0bDSA_PUB_KEY")
    assert decode_public_key(published).public_numbers() == key.public_key().public_numbers()


def test_new_server_keys_are_rsa(tmp_path: Path) -> None:
    assert isinstance(load_or_create_server_key(tmp_path / "new.pem"), rsa.RSAPrivateKey)


def test_other_server_keys_are_refused_in_one_line(tmp_path: Path) -> None:
    refused = {
        "ec": pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8),
        "garbage": b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        "encrypted": rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        ),
    }
    for name, content in refused.items():
        path = tmp_path / f"{name}.pem"
        assert create_private_file(path, content)
        with pytest.raises(StartupError) as raised:
            load_server_key(Config(server_key_file=str(path)))
        text = str(raised.value)
        assert str(path) in text and "\n" not in text, text
        if name == "ec":
            assert "EC" in text and "RSA or DSA" in text, text


# --- certified resolutions over real UDP and TCP ---------------------------------------


def ask(name: str, version: tuple[int, int]) -> c.Message:
    """A certified resolution as a client of ``version`` sends it: that version,
    nothing higher suggested (HANDLE.NET 7 writes no suggested version)."""
    request = cl.resolution(name, flags=c.FLAG_PUBL | c.FLAG_CERT | c.FLAG_RRDG, version=version)
    return replace(
        request, envelope=replace(request.envelope, suggested_major=0, suggested_minor=0)
    )


async def exchange(port: int, request: c.Message, *, udp: bool) -> bytes:
    """The answer's bytes exactly as they came off the socket (datagrams joined)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        if udp:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect(("127.0.0.1", port))
                await loop.sock_sendall(sock, request.to_bytes())
                collected = cl.UdpAnswer(request.envelope.request_id)
                while (whole := collected.add(await loop.sock_recv(sock, 2048))) is None:
                    pass
                return whole
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request.to_bytes())
            await writer.drain()
            head = await reader.readexactly(c.ENVELOPE_SIZE)
            return head + await reader.readexactly(c.message_length(head))
        finally:
            writer.close()
            await writer.wait_closed()


def covered_on_the_wire(raw: bytes, counter: int) -> bytes:
    """What the signature covers, cut from the received bytes by the offsets of
    the protocol (not by the codec): header and body, led from 2.7 by the envelope's
    versions (and from 2.8 its suggested version), session and request ids and the
    counter."""
    version = (raw[0], raw[1])
    body_length = int.from_bytes(raw[40:44], "big")
    header_and_body = raw[20 : 44 + body_length]
    if version < (2, 7):
        return header_and_body
    suggested = bytes([raw[2] & 0x1F, raw[3]]) if version >= (2, 8) else b""
    return raw[0:2] + suggested + raw[4:12] + struct.pack(">I", counter) + header_and_body


def openssl_verifies(
    directory: Path, key: PublicKey, name: bytes, signature: bytes, data: bytes
) -> bool:
    public = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / "pub.pem").write_bytes(public)
    (directory / "sig.bin").write_bytes(signature)
    (directory / "data.bin").write_bytes(data)
    digest = {b"SHA1": "-sha1", b"SHA-256": "-sha256"}[name]
    done = subprocess.run(
        [str(OPENSSL), "dgst", digest, "-verify", "pub.pem", "-signature", "sig.bin", "data.bin"],
        cwd=directory,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0 and b"Verified OK" in done.stdout


EXPECTED_HASH = {
    ("rsa", (2, 1)): b"SHA1",
    ("rsa", (2, 5)): b"SHA1",
    ("rsa", (2, 7)): b"SHA-256",
    ("rsa", (2, 11)): b"SHA-256",
    ("dsa", (2, 1)): b"SHA1",
    ("dsa", (2, 5)): b"SHA1",
    ("dsa", (2, 7)): b"SHA1",  # SHA1withDSA for peers below 2.11
    ("dsa", (2, 11)): b"SHA-256",
}


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "openssl"
    path.mkdir()
    yield path


@needs(OPENSSL is not None, "openssl")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", ["rsa", "dsa"])
async def test_certified_resolutions_verify_at_every_version(
    registry: Registry,
    admin: Actor,
    keys: dict[str, ServerKey],
    kind: str,
    tmp_path: Path,
    scratch: Path,
) -> None:
    path = key_file(tmp_path, keys[kind], serialization.PrivateFormat.PKCS8)
    key = load_server_key(Config(server_key_file=str(path)))
    prefix = await seed(registry, admin)
    async with native_server(registry, key) as served:
        info = await served.udp(cl.request(c.OC_GET_SITE_INFO, c.HandleOnly(b"/").to_bytes()))
        published = decode_public_key(SiteInfo.from_bytes(info.body).servers[0].public_key)
        assert published.public_numbers() == keys[kind].public_key().public_numbers()
        for version in ((2, 1), (2, 5), (2, 7), (2, 11)):
            for udp in (True, False):
                where = (kind, version, "udp" if udp else "tcp")
                request = ask(f"{prefix}/demo-0001", version)
                raw = await exchange(served.port, request, udp=udp)
                answer = c.Message.from_bytes(raw)
                assert answer.envelope.version == version, where
                assert answer.header.response_code == 1, where
                cl.checked(request, answer)  # the request digest, by the version's hash
                credential = cred.Credential.from_bytes(answer.credential)
                assert credential.signature_type == b"HS_SIGNED", where
                assert credential.digest_algorithm == EXPECTED_HASH[kind, version], where
                assert verify_response(answer, published), where
                covered = covered_on_the_wire(raw, credential.signer_index)
                assert covered == cred.signed_bytes(answer, credential.signer_index), where
                name, signature = credential.digest_algorithm, credential.signature
                assert openssl_verifies(scratch, published, name, signature, covered), where
                tampered = covered[:-1] + bytes([covered[-1] ^ 1])
                assert not openssl_verifies(scratch, published, name, signature, tampered), where
