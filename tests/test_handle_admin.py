"""Authentication and administration over the native protocol on loopback: challenges
answered with secret and public keys, the administrative operations and their
permissions, IDIS logins, lockout, expiry and server-to-server verification.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from registry import store
from registry.models import HandleValue
from registry.services import Actor
from registry.values import HS_ADMIN, HS_PUBKEY, AdminRef, encode_public_key
from resolver.handle import challenges
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle.proofs import encode_secret_key_proof
from tests.factories import ADMIN_SK, application
from tests.factories import handle_value as text
from tests.native_node import NODE, Native, node_secret, seed


@pytest.mark.parametrize(
    "mac",
    [
        cred.MAC_PBKDF2_HMAC_SHA1,
        cred.MAC_HMAC_SHA256,
        cred.MAC_SHA256,
        cred.MAC_SHA1,
        cred.MAC_MD5,
        cred.MAC_HMAC_SHA1,
    ],
)
async def test_secret_key_challenge_and_admin_ops(native: Native, admin: Actor, mac: int) -> None:
    prefix = await seed(native.registry, admin)
    who = replace(node_secret(), mac_code=mac)
    values = (
        text(1, "URL", "https://example.org/n"),
        HandleValue(100, HS_ADMIN, AdminRef(NODE, 300).to_bytes()),
    )
    create = cl.request(
        c.OC_CREATE_HANDLE, c.HandleValues(f"{prefix}/native-1".encode(), values).to_bytes()
    )
    answer = await native.tcp(create, who)
    assert answer.header.response_code == 1, cl.error_text(answer)
    assert c.HandleOnly.from_bytes(answer.body).handle == f"{prefix}/native-1".encode()
    resolved = await native.udp(cl.resolution(f"{prefix}/native-1"))
    assert cl.values_of(resolved)[0].data == b"https://example.org/n"
    wrong = replace(who, secret=b"not-it")
    denied = await native.tcp(
        replace(create, envelope=replace(create.envelope, request_id=cl.next_request_id())), wrong
    )
    assert denied.header.response_code == 403


async def test_admin_operations_semantics(native: Native, admin: Actor) -> None:
    prefix = await seed(native.registry, admin)
    session = await native.session(node_secret())
    name = f"{prefix}/ops".encode()

    async def call(op: int, body: bytes, flags: int = 0) -> c.Message:
        return await session.call(cl.request(op, body, flags=flags))

    try:
        one = (text(1, "URL", "https://a"),)
        assert (
            await call(c.OC_CREATE_HANDLE, c.HandleValues(name, one).to_bytes())
        ).header.response_code == 1
        again = await call(c.OC_CREATE_HANDLE, c.HandleValues(name, one).to_bytes())
        assert again.header.response_code == 101  # exists, no OVRW
        overwritten = await call(
            c.OC_CREATE_HANDLE, c.HandleValues(name, one).to_bytes(), c.FLAG_OVRW
        )
        assert overwritten.header.response_code == 1 and overwritten.flag(c.FLAG_OVRW)
        add = c.HandleValues(name, (text(2, "EMAIL", "x@y"),)).to_bytes()
        assert (await call(c.OC_ADD_VALUE, add)).header.response_code == 1
        assert (await call(c.OC_ADD_VALUE, add)).header.response_code == 201
        modify_missing = c.HandleValues(name, (text(9, "DESC", "d"),)).to_bytes()
        assert (await call(c.OC_MODIFY_VALUE, modify_missing)).header.response_code == 200
        modify = c.HandleValues(name, (text(2, "EMAIL", "z@y"),)).to_bytes()
        assert (await call(c.OC_MODIFY_VALUE, modify)).header.response_code == 1
        remove = c.RemoveValues(name, (1,)).to_bytes()
        assert (await call(c.OC_REMOVE_VALUE, remove)).header.response_code == 1
        record = await native.tcp(cl.resolution(name.decode()))
        assert [(v.index, v.data) for v in cl.values_of(record)] == [(2, b"z@y")]
        listing = await call(c.OC_LIST_HANDLES, c.HandleOnly(f"0.NA/{prefix}".encode()).to_bytes())
        assert name in c.HandleList.from_bytes(listing.body).handles
        homed = await call(c.OC_LIST_HOMED_NAS, c.HandleOnly(b"/").to_bytes())
        assert f"0.NA/{prefix}".encode() in c.HandleList.from_bytes(homed.body).handles
        assert (
            await call(c.OC_DELETE_HANDLE, c.HandleOnly(name).to_bytes())
        ).header.response_code == 1
        assert (
            await call(c.OC_DELETE_HANDLE, c.HandleOnly(name).to_bytes())
        ).header.response_code == 100
        # Homing: a prefix with no records can be unhomed and homed again.
        _, spare = await native.registry.enterprises.apply(admin, application(3))
        home = c.HandleOnly(f"0.NA/{spare.prefix}".encode()).to_bytes()
        assert (await call(c.OC_HOME_NA, home)).header.response_code == 1
        assert (await native.udp(cl.resolution(f"{spare.prefix}/x"))).header.response_code == 100
        assert (await call(c.OC_UNHOME_NA, home)).header.response_code == 1
        busy = c.HandleOnly(f"0.NA/{prefix}".encode()).to_bytes()
        assert (await call(c.OC_UNHOME_NA, busy)).header.response_code == 401
    finally:
        await session.close()
    # Native writes are registry writes: audited, queued for the top-level node.
    async with native.registry.services.read() as conn:
        events = [e["event"] for e in await store.outbox_events(conn, limit=10_000)]
    assert events.count("identifier.deleted") >= 1 and "identifier.created" in events
    assert await native.registry.verify_audit() == []


async def test_public_key_identities_and_permissions(
    native: Native, admin: Actor, tmp_path: Path
) -> None:
    prefix = await seed(native.registry, admin)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Two identities: the binary key record (HANDLE.NET), the PEM text (IDIS SDKs).
    await native.registry.handles.create(
        admin,
        f"{prefix}/alice",
        [
            HandleValue(300, HS_PUBKEY, encode_public_key(key.public_key())),
            HandleValue(301, HS_PUBKEY, pem),
        ],
        overwrite=False,
    )
    await native.registry.handles.create(
        admin,
        f"{prefix}/owned",
        [
            text(1, "URL", "u"),
            HandleValue(100, HS_ADMIN, AdminRef(f"{prefix}/alice", 300, 0x0070).to_bytes()),
        ],
        overwrite=False,
    )
    for index in (300, 301):
        alice = cl.KeyPair(f"{prefix}/alice", index, key)
        modify = cl.request(
            c.OC_MODIFY_VALUE,
            c.HandleValues(
                f"{prefix}/owned".encode(), (text(1, "URL", f"https://by-{index}"),)
            ).to_bytes(),
        )
        answer = await native.tcp(modify, alice)
        assert answer.header.response_code == (1 if index == 300 else 401), cl.error_text(answer)
    # No ADD_HANDLE anywhere for Alice: creating is refused.
    create = cl.request(
        c.OC_CREATE_HANDLE,
        c.HandleValues(f"{prefix}/alice-new".encode(), (text(1, "URL", "u"),)).to_bytes(),
    )
    denied = await native.tcp(create, cl.KeyPair(f"{prefix}/alice", 300, key))
    assert denied.header.response_code == 401
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = await native.tcp(create, cl.KeyPair(f"{prefix}/alice", 300, stranger))
    assert forged.header.response_code == 403


async def test_idis_login_binds_the_connection(native: Native, admin: Actor) -> None:
    prefix = await seed(native.registry, admin)
    session = await native.session(node_secret())
    try:
        assert (await session.login()).header.response_code == 1
        # Logged in: admin operations need no further challenge on this connection.
        create = cl.request(
            c.OC_CREATE_HANDLE,
            c.HandleValues(f"{prefix}/after-login".encode(), (text(1, "URL", "u"),)).to_bytes(),
        )
        answer = await session.send(create)
        assert answer.header.response_code == 1
        assert (await session.login()).header.response_code == challenges.RC_RELOGIN
        restricted = await session.send(cl.resolution(f"{prefix}/demo-0001", flags=0))
        assert 4 in [v.index for v in cl.values_of(restricted)]  # the identity may read it
    finally:
        await session.close()
    failing = await native.session(replace(node_secret(), secret=b"wrong"))
    try:
        assert (await failing.login()).header.response_code == 403
        delete = cl.request(c.OC_DELETE_HANDLE, c.HandleOnly(b"88.100.1/demo-0001").to_bytes())
        assert (await failing.send(delete)).header.response_code == challenges.RC_LOGIN_FIRST
    finally:
        await failing.close()


async def test_repeated_wrong_secrets_lock_the_identity(native: Native, admin: Actor) -> None:
    """Brute force over the native challenge: after ``login_attempts`` wrong answers
    the identity gets no verdict — even for the right secret — until the lock ends."""
    await seed(native.registry, admin)
    lockout = native.registry.services.lockout
    lockout.reconfigure(3, 60, ("127.0.0.0/8",))  # loopback: locked through the identity
    for _ in range(3):
        wrong = await native.session(replace(node_secret(), secret=b"wrong"))
        try:
            answer = await wrong.login()
            assert answer.header.response_code == 403
            assert cl.error_text(answer) == "authentication failed"
        finally:
            await wrong.close()
    right = await native.session(node_secret())
    try:
        answer = await right.login()
        assert answer.header.response_code == 403
        assert "too many failed logins" in cl.error_text(answer)
    finally:
        await right.close()
    lockout.clock = lambda: time.monotonic() + 61  # the lock has ended
    again = await native.session(node_secret())
    try:
        assert (await again.login()).header.response_code == 1
    finally:
        await again.close()


async def test_challenges_expire(
    native: Native, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = await seed(native.registry, admin)
    monkeypatch.setattr(challenges, "CHALLENGE_SECONDS", 0.2)
    session = await native.session(node_secret())
    try:
        delete = cl.request(c.OC_DELETE_HANDLE, c.HandleOnly(f"{prefix}/big".encode()).to_bytes())
        challenge = await session.send(delete)
        assert challenge.header.response_code == 402
        await asyncio.sleep(0.4)
        nonce = cred.Challenge.from_bytes(challenge.body).nonce
        digest = c.request_digest(delete, challenge.envelope.version)[1:]
        proof = node_secret().answer(nonce, digest)
        late = await session.send(
            cl.request(
                c.OC_CHALLENGE_RESPONSE, proof.to_bytes(), session_id=challenge.envelope.session_id
            )
        )
        assert late.header.response_code == challenges.RC_AUTHEN_TIMEOUT
    finally:
        await session.close()


async def test_verify_challenge_for_stored_secrets(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    nonce, digest = b"n" * 16, b"d" * 32
    proof = encode_secret_key_proof(cred.MAC_HMAC_SHA256, ADMIN_SK.encode(), nonce + digest)
    ask = cred.VerifyChallenge(NODE.encode(), 300, nonce, digest, proof)
    good = await native.tcp(cl.request(c.OC_VERIFY_CHALLENGE, ask.to_bytes()))
    assert (good.header.response_code, good.body) == (1, b"\x01")
    forged = replace(ask, signed_response=proof[:-1] + b"\x00")
    bad = await native.tcp(cl.request(c.OC_VERIFY_CHALLENGE, forged.to_bytes()))
    assert bad.body == b"\x00"
