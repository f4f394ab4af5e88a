"""IDIS "encrypted transport after login" on loopback TCP: the teleinfo SDK's session
setup (op 400, key exchange "cipher HDL" under a session id of the client's own) on a
logged-in connection, answered with ``int4 4 ‖ SM4 key`` encrypted to the identity's
SM2 HS_PUBKEY (C1C3C2), then requests and answers in SM4-CBC with the key as IV — the
SM2 decryption and every SM4 block done by gmalg, independently of the node."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import replace

import gmalg
import pytest

from registry.crypto import Sm2PrivateKey
from registry.models import HandleValue
from registry.services import Actor
from registry.values import HS_ADMIN, HS_PUBKEY, AdminRef, encode_public_key
from registry.wire import blob
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle import session_client as sessions
from resolver.handle import session_codec as sc
from tests.factories import handle_value as text
from tests.native_node import Native, seed

# cryptography deprecates DSA for new designs; one test stores a DSA key on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")

IDIS_SESSION_ID = 10_001
"""The teleinfo SDK numbers its sessions itself, from 10001, the same in every client."""


def sm4_cbc(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    """SM4-CBC with the key as IV and PKCS#5 padding, block by block with gmalg."""
    cipher, previous, out = gmalg.SM4(key), key, b""
    if not decrypt:
        pad = 16 - len(data) % 16
        data += bytes([pad]) * pad
    for at in range(0, len(data), 16):
        block = data[at : at + 16]
        if decrypt:
            plain = bytes(a ^ b for a, b in zip(cipher.decrypt(block), previous, strict=True))
            out, previous = out + plain, block
        else:
            previous = cipher.encrypt(bytes(a ^ b for a, b in zip(block, previous, strict=True)))
            out += previous
    return out[: -out[-1]] if decrypt else out


def idis_setup(handle: str, index: int) -> c.Message:
    """``SessionSetupIdRequest(userHandle, userIndex)`` as the SDK encodes it: mode 3,
    its default timeout, no identity (-1), the user's handle and index as the exchange
    key, and the two bytes HANDLE.NET's encoder leaves."""
    body = (
        struct.pack(">Hi", sc.KEY_EXCHANGE_CIPHER_HDL, 86_400)
        + blob(b"")
        + struct.pack(">i", -1)
        + blob(handle.encode())
        + struct.pack(">i", index)
        + b"\x00\x00"
    )
    request = cl.request(c.OC_SESSION_SETUP, body, version=(2, 10), flags=c.FLAG_RRDG)
    return replace(request, envelope=replace(request.envelope, session_id=IDIS_SESSION_ID))


def sealed(message: c.Message, key: bytes) -> bytes:
    envelope, rest = c.split_envelope(message.to_bytes())
    ciphertext = sm4_cbc(key, rest)
    return replace(envelope, encrypted=True, length=len(ciphertext)).to_bytes() + ciphertext


def opened(data: bytes, key: bytes) -> c.Message:
    envelope, rest = c.split_envelope(data)
    assert envelope.encrypted
    plain = sm4_cbc(key, rest[: envelope.length], decrypt=True)
    return c.Message.from_bytes(
        replace(envelope, encrypted=False, length=len(plain)).to_bytes() + plain
    )


@pytest.fixture
async def sm2_user(native: Native, admin: Actor) -> tuple[str, str, Sm2PrivateKey]:
    """A prefix, an SM2 identity in it (HS_PUBKEY at 300, IDIS form 1) and its key;
    the identity administers ``<prefix>/owned``."""
    prefix = await seed(native.registry, admin)
    key = Sm2PrivateKey.generate()
    handle = f"{prefix}/sm2-user"
    await native.registry.handles.create(
        admin,
        handle,
        [HandleValue(300, HS_PUBKEY, encode_public_key(key.public_key()))],
        overwrite=False,
    )
    ref = AdminRef(handle, 300, 0x0070).to_bytes()
    await native.registry.handles.create(
        admin,
        f"{prefix}/owned",
        [text(1, "URL", "u"), HandleValue(100, HS_ADMIN, ref)],
        overwrite=False,
    )
    return prefix, handle, key


async def test_idis_cipher_hdl_with_sm2_and_sm4(
    native: Native, sm2_user: tuple[str, str, Sm2PrivateKey]
) -> None:
    prefix, handle, key = sm2_user
    reader, writer = await asyncio.open_connection(native.host, native.port)

    async def exchange(data: bytes) -> bytes:
        writer.write(data)
        head = await asyncio.wait_for(reader.readexactly(c.ENVELOPE_SIZE), 10)
        return head + await reader.readexactly(c.message_length(head))

    try:
        # The SDK's login (op 2001, RD) and its answer to the challenge.
        login = cl.request(
            c.OC_LOGIN_ID_SYSTEM, cred.Login(handle.encode(), 300).to_bytes(), flags=c.FLAG_RRDG
        )
        challenge = c.Message.from_bytes(await exchange(login.to_bytes()))
        digest = c.request_digest(login, challenge.envelope.version)
        nonce = cred.Challenge.from_bytes(challenge.body[len(digest) :]).nonce
        proof = cl.KeyPair(handle, 300, key).answer(nonce, digest[1:])
        answer_to = cl.request(
            c.OC_CHALLENGE_RESPONSE, proof.to_bytes(), session_id=challenge.envelope.session_id
        )
        assert c.response_code_of(await exchange(answer_to.to_bytes())) == 1
        setup_request = idis_setup(handle, 300)
        answer = cl.checked(
            setup_request, c.Message.from_bytes(await exchange(setup_request.to_bytes()))
        )
        assert answer.header.response_code == 1, cl.error_text(answer)
        assert answer.envelope.session_id == IDIS_SESSION_ID
        setup = sc.SessionSetupAnswer.from_bytes(answer.body)
        assert setup.mode == sc.KEY_EXCHANGE_CIPHER_HDL
        wrapped = gmalg.SM2(sk=key.to_bytes()).decrypt(setup.data)  # C1C3C2, 04-led
        assert wrapped[:4] == b"\x00\x00\x00\x04" and len(wrapped) == 20  # SM4, 16 bytes
        session_key = wrapped[4:]
        # An encrypted administrative request: the login authorises it.
        modify = cl.request(
            c.OC_MODIFY_VALUE,
            c.HandleValues(f"{prefix}/owned".encode(), (text(1, "URL", "https://e"),)).to_bytes(),
            flags=c.FLAG_ENCR,
        )
        modify = replace(modify, envelope=replace(modify.envelope, session_id=IDIS_SESSION_ID))
        reply = opened(await exchange(sealed(modify, session_key)), session_key)
        assert (reply.opcode, reply.header.response_code) == (c.OC_MODIFY_VALUE, 1)
        assert reply.envelope.request_id == modify.envelope.request_id
    finally:
        writer.close()
    resolved = await native.udp(cl.resolution(f"{prefix}/owned", indexes=[1]))
    assert cl.values_of(resolved)[0].data == b"https://e"


async def test_our_client_speaks_cipher_hdl(
    native: Native, sm2_user: tuple[str, str, Sm2PrivateKey]
) -> None:
    prefix, handle, key = sm2_user
    connection = await native.session(cl.KeyPair(handle, 300, key))
    try:
        assert (await connection.login()).header.response_code == 1
        setup = sessions.Setup(
            mode=sc.KEY_EXCHANGE_CIPHER_HDL, private_key=key, exchange=(handle, 300)
        )
        session, _ = await sessions.open_session(
            native.host, native.port, setup, on=connection, session_id=IDIS_SESSION_ID
        )
        assert session.cipher == sc.CIPHER_SM4
        connection.session, connection.encrypt = session, True
        answer = await connection.send(cl.resolution(f"{prefix}/owned"))
        assert cl.values_of(answer)[0].type == "URL"
    finally:
        await connection.close()


async def test_cipher_hdl_needs_a_key_that_encrypts(native: Native, admin: Actor) -> None:
    from cryptography.hazmat.primitives.asymmetric import dsa

    prefix = await seed(native.registry, admin)
    dsa_key = dsa.generate_private_key(key_size=2048).public_key()
    await native.registry.handles.create(
        admin,
        f"{prefix}/dsa",
        [HandleValue(300, HS_PUBKEY, encode_public_key(dsa_key))],
        overwrite=False,
    )
    answer = await native.tcp(idis_setup(f"{prefix}/dsa", 300))
    assert answer.header.response_code == 503
    missing = await native.tcp(idis_setup(f"{prefix}/nobody", 300))
    assert missing.header.response_code == 501
