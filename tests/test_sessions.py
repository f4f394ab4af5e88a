"""Native sessions on loopback UDP and TCP: HANDLE.NET HomeNA's captured flow replayed
against the node (site info at 2.3, Diffie-Hellman setup over UDP, administration
inside the session over fresh TCP connections, challenged once), with every key,
MAC and signature computed or checked by the test's own code; sessions at 2.11
(HMAC-SHA256), encryption, termination, expiry, replays, other clients' session
ids and malformed setups."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import struct
import time
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from registry.services import Actor
from registry.wire import blob
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle import session_client as sessions
from resolver.handle import session_codec as sc
from tests.factories import application
from tests.factories import handle_value as text
from tests.native_node import NODE, Native, node_secret, seed, udp_raw
from tests.test_sessions_codec import OAKLEY_GROUP_2, homena

# cryptography deprecates DSA for new designs; HANDLE.NET's keys may be DSA.
pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")

# --- the test's own session arithmetic (independent of resolver.handle) ----------------


def java_int(n: int) -> bytes:
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def dh_record(y: int, p: int = OAKLEY_GROUP_2) -> bytes:
    return blob(b"DH_PUB_KEY") + b"\x00\x00" + blob(java_int(y)) + blob(java_int(p)) + blob(b"\x02")


def rsa_record(e: int) -> bytes:
    """An RSA_PUB_KEY record with a real 2048-bit modulus and the exponent ``e``."""
    n = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    modulus = n.public_numbers().n
    return blob(b"RSA_PUB_KEY") + b"\x00\x00" + blob(java_int(e)) + blob(java_int(modulus))


def handle_net_key(secret: bytes) -> bytes:
    """HANDLE.NET's AES session key from a DH secret: 32 bytes, leading zeros skipped."""
    while len(secret) > 32 and secret[0] == 0:
        secret = secret[1:]
    return secret[:32]


def mac_2_5(key: bytes, header_and_body: bytes) -> bytes:
    """HANDLE.NET's HS_MAC at 2.5/2.6: SHA-1 over its mis-offset key‖…‖key buffer."""
    return hashlib.sha1(key[:4] + header_and_body + key + bytes(len(key) + 10)).digest()


def mac_2_11(key: bytes, message: c.Message, counter: int) -> bytes:
    env = message.envelope
    lead = bytes([2, 11, 2, 11]) + struct.pack(">III", env.session_id, env.request_id, counter)
    return hmac.digest(key, lead + message.signed_part, "sha256")


def mac_of(message: c.Message) -> tuple[int, bytes, bytes]:
    """The counter, hash name and MAC of a message's HS_MAC credential."""
    credential = cred.Credential.from_bytes(message.credential)
    assert credential.signature_type == b"HS_MAC"
    return credential.signer_index, credential.digest_algorithm, credential.signature


def aes_seal(key: bytes, plain: bytes) -> bytes:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key[:16]), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()


def aes_open(key: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key[:16]), modes.CBC(data[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = decryptor.update(data[16:]) + decryptor.finalize()
    return unpadder.update(plain) + unpadder.finalize()


async def tcp_once(native: Native, data: bytes, local: str = "127.0.0.1") -> bytes:
    """One request on a connection of its own, as HANDLE.NET's tools send them."""
    reader, writer = await asyncio.open_connection(native.host, native.port, local_addr=(local, 0))
    try:
        writer.write(data)
        head = await asyncio.wait_for(reader.readexactly(c.ENVELOPE_SIZE), 10)
        return head + await reader.readexactly(c.message_length(head))
    finally:
        writer.close()


async def in_session(native: Native, session: cl.SessionKey) -> None:
    """A certified resolution inside ``session``: answered as outside it, MACed."""
    ask = cl.resolution("88.100.1/none", flags=c.FLAG_CERT | c.FLAG_PUBL)
    outside = await native.udp(ask)
    inside = await native.udp(session.sign(replace(ask, envelope=replace(ask.envelope))))
    assert inside.header.response_code == outside.header.response_code < 500
    assert session.verify(inside)


def captured(n: int) -> c.Message:
    return c.Message.from_bytes(homena()[n])


def renewed(message: c.Message, session_id: int = 0) -> c.Message:
    """A captured request sent again now (in ``session_id``): a fresh request id and
    expiration."""
    envelope = replace(message.envelope, request_id=cl.next_request_id(), session_id=session_id)
    return replace(
        message,
        envelope=envelope,
        header=replace(message.header, expiration=int(time.time()) + 43_200),
    )


def signed_at_2_5(key: rsa.RSAPrivateKey, message: c.Message) -> bool:
    """An HS_SIGNED answer at 2.5 covers header and body, SHA-1 with the site key."""
    credential = cred.Credential.from_bytes(message.credential)
    assert (credential.signature_type, credential.digest_algorithm) == (b"HS_SIGNED", b"SHA1")
    key.public_key().verify(
        credential.signature, message.signed_part, rsa_padding.PKCS1v15(), hashes.SHA1()
    )
    return True


async def homena_setup(native: Native) -> tuple[int, bytes, c.Message]:
    """HomeNA's session setup over UDP for the node's administrator (300:0.NA/88.100)
    with a DH value the test made: the session id, the key the test derives, the answer."""
    request = captured(2)
    ours = secrets.randbits(256)
    record = dh_record(pow(2, ours, OAKLEY_GROUP_2))
    # mode · timeout as captured, identity · index, our key, HANDLE.NET's two trailing bytes
    identity = blob(NODE.encode()) + struct.pack(">i", 300)
    body = request.body[:6] + identity + blob(record) + b"\x00\x00"
    setup = renewed(replace(request, body=body))
    assembly = cl.UdpAnswer(setup.envelope.request_id)
    whole = [
        assembly.add(part)
        for part in await asyncio.to_thread(udp_raw, native, setup.to_bytes(), 1.0)
    ][-1]
    assert whole is not None
    answer = c.Message.from_bytes(whole)
    assert (answer.opcode, answer.header.response_code) == (400, 1), cl.error_text(answer)
    digest = hashlib.sha1(setup.signed_part).digest()  # RD, at 2.5
    assert answer.body[:21] == b"\x02" + digest
    mode, size = struct.unpack(">HI", answer.body[21:27])
    data = answer.body[27 : 27 + size]
    assert mode == 4 and answer.body[27 + size :] == b"\x00\x00"
    assert data[:4] == b"\x00\x00\x00\x03"  # AES
    server = sc.DhPublicKey.from_bytes(data[4:])
    assert (server.p, server.g) == (OAKLEY_GROUP_2, 2)
    shared = pow(server.y, ours, OAKLEY_GROUP_2).to_bytes(128, "big")
    return answer.envelope.session_id, handle_net_key(shared), answer


def homena_admin(session_id: int, key: bytes, op: int, handle: str, counter: int) -> bytes:
    """An administrative request as HomeNA sends it inside its session (2.5, HS_MAC)."""
    shape = captured(4)  # HOME_NA: 2.5, CT|REC|CA|PO
    message = renewed(
        replace(shape, header=replace(shape.header, opcode=op)), session_id=session_id
    )
    message = replace(message, body=c.HandleOnly(handle.encode()).to_bytes())
    mac = mac_2_5(key, message.signed_part)
    return replace(message, credential=sc.mac_credential(counter, b"\x02", mac)).to_bytes()


# --- HANDLE.NET HomeNA, as captured ------------------------------------------------------


async def test_homena_flow_over_udp_and_tcp(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    _, spare = await native.registry.enterprises.apply(admin, application(3))
    key = native.service.server_key
    assert isinstance(key, rsa.RSAPrivateKey)
    # Site info over TCP at 2.3, as captured.
    site = c.Message.from_bytes(await tcp_once(native, renewed(captured(0)).to_bytes()))
    assert site.envelope.version == (2, 3) and site.header.response_code == 1
    # Session setup over UDP (DH, mode 4): signed with the site key, session id set.
    session_id, session_key, answer = await homena_setup(native)
    assert session_id != 0 and answer.envelope.version == (2, 5)
    assert signed_at_2_5(key, answer)
    # HOME_NA inside the session over TCP: challenged in the session, MACed (counter 1).
    home = homena_admin(session_id, session_key, c.OC_HOME_NA, f"0.NA/{spare.prefix}", 1)
    challenge = c.Message.from_bytes(await tcp_once(native, home))
    assert challenge.header.response_code == 402
    assert challenge.envelope.session_id == session_id
    assert mac_of(challenge) == (1, b"\x02", mac_2_5(session_key, challenge.signed_part))
    digest = c.request_digest(c.Message.from_bytes(home), (2, 5))
    assert challenge.body.startswith(digest)
    nonce = cred.Challenge.from_bytes(challenge.body[len(digest) :]).nonce
    # The answer comes over another connection, without MAC, as HomeNA sends it.
    proof = node_secret().answer(nonce, digest[1:], (2, 5))
    answer_request = renewed(replace(captured(6), body=proof.to_bytes()), session_id=session_id)
    homed = c.Message.from_bytes(await tcp_once(native, answer_request.to_bytes()))
    assert (homed.opcode, homed.header.response_code) == (300, 1), cl.error_text(homed)
    assert homed.envelope.session_id == session_id
    assert mac_of(homed) == (2, b"\x02", mac_2_5(session_key, homed.signed_part))
    assert (await native.udp(cl.resolution(f"{spare.prefix}/x"))).header.response_code == 100
    # The session is authenticated: the next administration needs no challenge.
    unhome = homena_admin(session_id, session_key, c.OC_UNHOME_NA, f"0.NA/{spare.prefix}", 2)
    unhomed = c.Message.from_bytes(await tcp_once(native, unhome))
    assert (unhomed.opcode, unhomed.header.response_code) == (301, 1), cl.error_text(unhomed)
    assert mac_of(unhomed) == (3, b"\x02", mac_2_5(session_key, unhomed.signed_part))
    # The same message again is a replay.
    replayed = c.Message.from_bytes(await tcp_once(native, unhome))
    assert replayed.header.response_code == 505
    # A MAC that does not hold: RC 502; another client's session id: RC 500.
    forged = homena_admin(session_id, b"\x00" * 32, c.OC_UNHOME_NA, "0.NA/88.100.1", 9)
    assert c.response_code_of(await tcp_once(native, forged)) == 502
    other = homena_admin(session_id, session_key, c.OC_UNHOME_NA, "0.NA/88.100.1", 10)
    assert c.response_code_of(await tcp_once(native, other, local="127.0.0.2")) == 500


async def test_counters_within_the_window_may_come_out_of_order(native: Native) -> None:
    session, _ = await sessions.open_session(native.host, native.port, udp=True)
    resolve = cl.resolution("88.100.1/none")
    for counter, code in ((5, 100), (3, 100), (5, 505), (4, 100)):
        answer = await native.udp(session.sign(resolve, counter=counter))
        assert answer.header.response_code == code
    for counter in range(6, 6 + 300):  # slides the window past 3..5
        assert (
            await native.udp(session.sign(resolve, counter=counter))
        ).header.response_code == 100
    assert (await native.udp(session.sign(resolve, counter=40))).header.response_code == 505


# --- HANDLE.NET 9 (2.11): HMAC-SHA256 ----------------------------------------------------


async def test_session_at_2_11_authenticates_once(native: Native, admin: Actor) -> None:
    prefix = await seed(native.registry, admin)
    session, answer = await sessions.open_session(
        native.host, native.port, sessions.Setup(identity=(NODE, 300), timeout=600), udp=False
    )
    assert session.version == (2, 11) and answer.envelope.session_id == session.session_id
    connection = await native.session(node_secret())
    connection.session = session
    try:
        first = cl.request(
            c.OC_CREATE_HANDLE,
            c.HandleValues(f"{prefix}/s-1".encode(), (text(1, "URL", "u"),)).to_bytes(),
            flags=c.FLAG_CERT,
        )
        created = await connection.call(first)  # challenged, then answered
        assert created.header.response_code == 1, cl.error_text(created)
        counter, name, mac = mac_of(created)
        assert name == b"HMAC-SHA256" and mac == mac_2_11(session.key, created, counter)
        second = cl.request(
            c.OC_CREATE_HANDLE,
            c.HandleValues(f"{prefix}/s-2".encode(), (text(1, "URL", "u"),)).to_bytes(),
            flags=c.FLAG_CERT,
        )
        direct = await connection.send(session.sign(second))  # no challenge handling
        assert direct.header.response_code == 1, cl.error_text(direct)
        assert session.verify(direct)
        # Inside the authenticated session, restricted values are readable too.
        restricted = await connection.send(
            session.sign(cl.resolution(f"{prefix}/demo-0001", flags=0))
        )
        assert 4 in [v.index for v in cl.values_of(restricted)]
    finally:
        await connection.close()


async def test_a_proof_of_another_identity_leaves_the_session_unauthenticated(
    native: Native, admin: Actor
) -> None:
    prefix = await seed(native.registry, admin)
    session, _ = await sessions.open_session(
        native.host, native.port, sessions.Setup(identity=(f"{prefix}/someone", 300))
    )
    connection = await native.session(node_secret())
    connection.session = session
    try:
        for n in (1, 2):  # each administration is challenged again
            create = cl.request(
                c.OC_CREATE_HANDLE,
                c.HandleValues(f"{prefix}/x-{n}".encode(), (text(1, "URL", "u"),)).to_bytes(),
            )
            signed = session.sign(create)
            assert (await connection.send(signed)).header.response_code == 402
    finally:
        await connection.close()


# --- encryption ----------------------------------------------------------------------------


async def test_encrypted_requests_and_answers(native: Native, admin: Actor) -> None:
    prefix = await seed(native.registry, admin)
    session, _ = await sessions.open_session(native.host, native.port, udp=True)
    # Encrypted by the test's own AES-CBC: IV first, then the ciphertext.
    plain = cl.resolution(f"{prefix}/demo-0001", flags=c.FLAG_ENCR)
    plain = replace(plain, envelope=replace(plain.envelope, session_id=session.session_id))
    envelope, rest = c.split_envelope(plain.to_bytes())
    sealed = aes_seal(session.key, rest)
    data = replace(envelope, encrypted=True, length=len(sealed)).to_bytes() + sealed
    for whole in (
        (await asyncio.to_thread(udp_raw, native, data, 1.0))[0],
        await tcp_once(native, data),
    ):
        assert c.is_encrypted(whole)
        answer_envelope, ciphertext = c.split_envelope(whole)
        plain_answer = aes_open(session.key, ciphertext[: answer_envelope.length])
        opened = c.Message.from_bytes(
            replace(answer_envelope, encrypted=False, length=len(plain_answer)).to_bytes()
            + plain_answer
        )
        assert opened.header.response_code == 1
        assert c.HandleValues.from_bytes(opened.body).handle == f"{prefix}/demo-0001".encode()
    # Our client does the same both ways, over a persistent connection.
    connection = await native.session()
    connection.session, connection.encrypt = session, True
    try:
        answer = await connection.send(cl.resolution(f"{prefix}/demo-0001"))
        assert cl.values_of(answer)[0].data == b"https://example.org/products/demo-0001"
    finally:
        await connection.close()
    # Bytes that do not decrypt under the key: RC 501, in the clear.
    garbage = replace(envelope, encrypted=True, length=32).to_bytes() + os.urandom(32)
    refused = c.Message.from_bytes(await tcp_once(native, garbage))
    assert refused.header.response_code == 501 and refused.opcode == 0


# --- lifetime --------------------------------------------------------------------------------


async def test_terminate(native: Native) -> None:
    session, _ = await sessions.open_session(native.host, native.port, udp=True)
    resolve = cl.resolution("88.100.1/none")
    unmaced = cl.request(c.OC_SESSION_TERMINATE, c.HandleOnly(b"/").to_bytes())
    unmaced = replace(unmaced, envelope=replace(unmaced.envelope, session_id=session.session_id))
    assert (await native.tcp(unmaced)).header.response_code == 502
    assert (await native.udp(session.sign(resolve))).header.response_code == 100
    assert (await sessions.terminate(native.host, native.port, session)).header.response_code == 1
    assert (await native.udp(session.sign(resolve))).header.response_code == 500
    again = await sessions.terminate(native.host, native.port, session)
    assert again.header.response_code == 500


async def test_sessions_expire_when_idle(native: Native) -> None:
    table = native.service.sessions
    session, _ = await sessions.open_session(
        native.host, native.port, sessions.Setup(timeout=10**9), udp=True
    )
    resolve = cl.resolution("88.100.1/none")
    now = time.monotonic()
    table.clock = lambda: now + table.max_timeout - 5  # the longest timeout is the node's
    assert (await native.udp(session.sign(resolve))).header.response_code == 100
    table.clock = lambda: now + 2 * table.max_timeout
    answer = await native.udp(session.sign(resolve))
    assert answer.header.response_code == 500
    assert "timed out" in cl.error_text(answer)


async def test_the_table_is_bounded(native: Native) -> None:
    table = native.service.sessions
    table.per_client = 3
    opened = [(await sessions.open_session(native.host, native.port))[0] for _ in range(5)]
    assert len(table) == 3  # the client's least recently used made room
    resolve = cl.resolution("88.100.1/none")
    assert (await native.udp(opened[0].sign(resolve))).header.response_code == 500
    assert (await native.udp(opened[-1].sign(resolve))).header.response_code == 100
    table.per_client, table.max_sessions = 16, 3  # full of sessions it may not evict
    with pytest.raises(sessions.SessionError) as refused:
        await sessions.open_session(native.host, native.port)
    assert refused.value.code == 3 and len(table) == 3


# --- key exchange modes 1, 2 and 3 -------------------------------------------------------------


async def test_mode_1_client_rsa_key(native: Native) -> None:
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    session, answer = await sessions.open_session(
        native.host,
        native.port,
        sessions.Setup(mode=sc.KEY_EXCHANGE_CIPHER_CLIENT, private_key=mine),
    )
    data = sc.SessionSetupAnswer.from_bytes(answer.body).data
    plain = mine.decrypt(data, rsa_padding.PKCS1v15())  # the test's own RSA
    assert plain[:4] == b"\x00\x00\x00\x03" and plain[4:] == session.key and len(session.key) == 16
    await in_session(native, session)


async def test_mode_2_server_rsa_key(native: Native) -> None:
    session, answer = await sessions.open_session(
        native.host, native.port, sessions.Setup(mode=sc.KEY_EXCHANGE_CIPHER_SERVER), udp=False
    )
    assert sc.SessionSetupAnswer.from_bytes(answer.body).data.startswith(b"\x00\x00\x00\x0bRSA")
    await in_session(native, session)
    # A second key for the same session is refused.
    bogus = cl.request(c.OC_SESSION_EXCHANGEKEY, sc.ExchangeKey(os.urandom(256)).to_bytes())
    again = replace(bogus, envelope=replace(bogus.envelope, session_id=session.session_id))
    assert (await native.tcp(again)).header.response_code == 501
    # A key that does not decrypt gets no hint (no padding oracle): the session just
    # has a key nobody knows.
    body = sc.SessionSetup(sc.KEY_EXCHANGE_CIPHER_SERVER, 60).to_bytes()
    other = await native.tcp(_setup_request(body))
    assert other.header.response_code == 1
    blind = replace(bogus, envelope=replace(bogus.envelope, session_id=other.envelope.session_id))
    assert (await native.tcp(blind)).header.response_code == 1


async def test_mode_3_key_from_a_handle(native: Native, admin: Actor) -> None:
    from registry.models import HandleValue
    from registry.values import HS_PUBKEY, encode_public_key

    prefix = await seed(native.registry, admin)
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await native.registry.handles.create(
        admin,
        f"{prefix}/keys",
        [HandleValue(300, HS_PUBKEY, encode_public_key(mine.public_key()))],
        overwrite=False,
    )
    setup = sessions.Setup(
        mode=sc.KEY_EXCHANGE_CIPHER_HDL, private_key=mine, exchange=(f"{prefix}/keys", 300)
    )
    session, _ = await sessions.open_session(native.host, native.port, setup)
    await in_session(native, session)
    missing = replace(setup, exchange=(f"{prefix}/keys", 301))
    with pytest.raises(sessions.SessionError) as refused:
        await sessions.open_session(native.host, native.port, missing)
    assert refused.value.code == 501


# --- malformed setups -------------------------------------------------------------------------


def _setup_request(body: bytes) -> c.Message:
    return cl.request(c.OC_SESSION_SETUP, body, flags=c.FLAG_CERT | c.FLAG_RRDG)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        sc.SessionSetup(4, 60, public_key=dh_record(5)).to_bytes()[:20],
        struct.pack(">Hi", 7, 60) + blob(b"") + struct.pack(">i", -1),
        struct.pack(">Hi", 4, 60) + blob(b"") + struct.pack(">iI", -1, 70_000) + bytes(64),
        sc.SessionSetup(4, 60, public_key=dh_record(0)).to_bytes(),
        sc.SessionSetup(4, 60, public_key=dh_record(1)).to_bytes(),
        sc.SessionSetup(4, 60, public_key=dh_record(OAKLEY_GROUP_2 - 1)).to_bytes(),
        sc.SessionSetup(4, 60, public_key=b"\x00\x00\x00\x0bRSA_PUB_KEY\x00\x00").to_bytes(),
        sc.SessionSetup(1, 60, public_key=b"garbage").to_bytes(),
        sc.SessionSetup(1, 60, public_key=rsa_record(2**100 + 1)).to_bytes(),
        sc.SessionSetup(4, 60, public_key=dh_record(5, (1 << 4095) + 1)).to_bytes(),
    ],
    ids=[
        "empty",
        "truncated",
        "mode-7",
        "huge-key",
        "y-0",
        "y-1",
        "y-p-1",
        "not-dh",
        "bad-rsa",
        "rsa-e-100-bits",
        "dh-4096",
    ],
)
async def test_malformed_setups_are_refused_precisely(native: Native, body: bytes) -> None:
    for udp in (True, False):
        request = _setup_request(body)
        answer = await (native.udp(request) if udp else native.tcp(request))
        assert answer.header.response_code == 504, cl.error_text(answer)
        assert cl.error_text(answer)
    assert len(native.service.sessions) == 0
    assert (await native.udp(cl.resolution("88.100.1/x"))).header.response_code == 100


async def test_setup_for_a_non_rsa_client_key_needs_rsa(native: Native) -> None:
    from cryptography.hazmat.primitives.asymmetric import dsa

    from registry.values import encode_public_key

    dsa_key = dsa.generate_private_key(key_size=2048).public_key()
    body = sc.SessionSetup(1, 60, public_key=encode_public_key(dsa_key)).to_bytes()
    answer = await native.udp(_setup_request(body))
    assert answer.header.response_code == 503


async def test_idis_session_lives_on_its_connection(native: Native) -> None:
    """IDIS SDKs set up encryption on a logged-in connection under an id of their
    own (sequential, shared by many clients): it holds on that connection only."""
    connection = await native.session(node_secret())
    try:
        assert (await connection.login()).header.response_code == 1
        session, answer = await sessions.open_session(
            native.host, native.port, udp=False, on=connection, session_id=10_001
        )
        assert answer.envelope.session_id == 10_001 == session.session_id
        connection.session, connection.encrypt = session, True
        resolved = await connection.send(cl.resolution("88.100.1/none"))
        assert resolved.header.response_code == 100
        # Another connection (same address) knows no session 10001.
        sealed = session.seal(cl.resolution("88.100.1/none").to_bytes())
        sealed = sealed[:4] + struct.pack(">I", 10_001) + sealed[8:]
        assert c.response_code_of(await tcp_once(native, sealed)) == 500
    finally:
        await connection.close()
    await asyncio.sleep(0.1)
    assert len(native.service.sessions) == 0  # ended with its connection
