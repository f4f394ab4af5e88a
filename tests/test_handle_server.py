"""The native protocol served over real UDP and TCP sockets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from idnode.config import Config, Endpoint
from idnode.listen import bind_pair
from idnode.site import node_site
from registry import store
from registry.models import PERM_RESTRICTED, HandleValue, SiteRoute
from registry.secrets import ServerKey, load_or_create_server_key
from registry.services import Actor, Registry
from registry.values import (
    HS_ADMIN,
    HS_PUBKEY,
    AdminRef,
    SiteInfo,
    decode_public_key,
    encode_public_key,
)
from resolver import codes as rc
from resolver.engine import Engine
from resolver.handle import admin as handle_admin
from resolver.handle import challenges
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle import server as srv
from resolver.handle import service as svc
from resolver.handle.proofs import encode_secret_key_proof, verify_response
from resolver.handle.recursion import Recursor
from resolver.idle import IdleSweeper
from tests import vectors
from tests.factories import ADMIN_SK, application, hosted_enterprise
from tests.factories import handle_value as text

NODE = "0.NA/88.100"


@dataclass
class Native:
    host: str
    port: int
    service: svc.HandleService
    registry: Registry
    engine: Engine

    async def udp(self, message: c.Message) -> c.Message:
        return await cl.udp_call(self.host, self.port, message)

    async def tcp(self, message: c.Message, credentials: cl.Credentials | None = None) -> c.Message:
        return await cl.tcp_call(self.host, self.port, message, credentials=credentials)

    async def session(self, credentials: cl.Credentials | None = None) -> cl.TcpSession:
        return await cl.TcpSession.open(self.host, self.port, credentials)


@contextlib.asynccontextmanager
async def native_server(registry: Registry, key: ServerKey) -> AsyncIterator[Native]:
    """The native service on loopback UDP and TCP, signing with ``key``."""
    engine = Engine(registry)
    tcp_sock, udp_sock = bind_pair(Endpoint("127.0.0.1", 0))
    port = tcp_sock.getsockname()[1]
    site = node_site(
        Config(),
        Endpoint("127.0.0.1", 8000),
        tls=False,
        handle=Endpoint("127.0.0.1", port),
        public_key=encode_public_key(key.public_key()),
    )
    registry.services.site = site
    service = svc.HandleService(
        engine,
        registry,
        site_serial=site.serial,
        server_key=key,
        site_bytes=site.to_bytes,
        # Whole answers over UDP, however large: these tests are about the protocol
        # (tests/test_limits.py sends large ones to TCP).
        udp_amplification=0,
    )
    listeners = await srv.start(service, tcp_sock, udp_sock, idle=1.0)
    try:
        yield Native("127.0.0.1", port, service, registry, engine)
    finally:
        await listeners.close()


@pytest.fixture
async def native(registry: Registry, tmp_path: Path) -> AsyncIterator[Native]:
    async with native_server(registry, load_or_create_server_key(tmp_path / "server.pem")) as it:
        yield it


async def seed(registry: Registry, admin: Actor) -> str:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    await registry.handles.create(
        admin,
        f"{prefix}/demo-0001",
        [
            text(1, "URL", "https://example.org/products/demo-0001"),
            text(2, "EMAIL", "ops@example.org"),
            text(3, "URL.mirror", "https://mirror.example.org/demo-0001"),
            text(4, "SECRET", "internal", permissions=PERM_RESTRICTED),
        ],
        overwrite=False,
    )
    await registry.handles.create(
        admin, f"{prefix}/big", [HandleValue(1, "BLOB", b"x" * 1500)], overwrite=False
    )
    return prefix


def node_secret() -> cl.SecretKey:
    return cl.SecretKey(NODE, 300, ADMIN_SK.encode())


# --- resolution ------------------------------------------------------------------


async def test_resolution_answers(native: Native, admin: Actor) -> None:
    prefix = await seed(native.registry, admin)
    for ask in (native.udp, native.tcp):
        answer = await ask(cl.resolution(f"{prefix}/demo-0001"))
        assert answer.header.response_code == 1
        body = c.HandleValues.from_bytes(answer.body)
        assert body.handle == b"88.100.1/demo-0001"
        assert [v.index for v in body.values] == [1, 2, 3]  # 4 is not public
        assert answer.header.flags & c.FLAG_AUTH and answer.header.flags & c.FLAG_PUBL
    filtered = await native.udp(cl.resolution(f"{prefix}/demo-0001", indexes=[2], types=["url"]))
    assert [v.index for v in cl.values_of(filtered)] == [1, 2, 3]
    subtypes = await native.udp(cl.resolution(f"{prefix}/demo-0001", types=["URL."]))
    assert [v.index for v in cl.values_of(subtypes)] == [3]
    missing = await native.udp(cl.resolution(f"{prefix}/none"))
    assert (missing.header.response_code, missing.body) == (100, b"\x00\x00\x00\x00")
    nothing = await native.udp(cl.resolution(f"{prefix}/demo-0001", types=["NOPE"]))
    assert (nothing.header.response_code, nothing.body) == (200, b"\x00\x00\x00\x00")
    foreign = await native.udp(cl.resolution("99.999/x"))
    assert foreign.header.response_code == 301
    assert b"doesn't live here" in foreign.body
    bad = await native.udp(cl.resolution("88..1/x"))
    assert bad.header.response_code == 102
    for spelling in (prefix, f"0.NA/{prefix}"):
        record = await native.udp(cl.resolution(spelling))
        types = {v.type for v in cl.values_of(record)}
        assert {"HS_ADMIN", "HS_SITE", "DESC"} <= types


async def test_referrals(native: Native, admin: Actor) -> None:
    _, routed = await native.registry.enterprises.apply(admin, application(2))
    await native.registry.enterprises.configure(
        admin, routed.prefix, SiteRoute(4, "10.1.2.3", tcp_port=2641, udp_port=2641)
    )
    answer = await native.udp(cl.resolution(f"{routed.prefix}/x"))
    assert answer.header.response_code == 302
    referral = c.HandleValues.from_bytes(answer.body)
    assert referral.handle == f"0.NA/{routed.prefix}".encode()
    site = SiteInfo.from_bytes(referral.values[0].data)
    assert site.servers[0].address_text == "10.1.2.3"
    derived = await native.udp(cl.resolution(f"0.NA/{routed.prefix}.7"))
    assert derived.header.response_code == 303
    assert c.HandleValues.from_bytes(derived.body).values[0].type == "HS_SITE.PREFIX"
    no_referral = await native.udp(
        cl.resolution(f"{routed.prefix}/x", flags=c.FLAG_PUBL | c.FLAG_DNRF)
    )
    assert no_referral.header.response_code == 301


@pytest.mark.parametrize(
    ("sent", "suggested", "answered"),
    [
        ((2, 5), (0, 0), (2, 5)),
        ((2, 3), (2, 10), (2, 10)),
        ((2, 11), (2, 11), (2, 11)),
        ((9, 9), (0, 0), (2, 11)),
        ((2, 1), (0, 0), (2, 1)),
        ((1, 0), (0, 0), (2, 1)),
    ],
)
async def test_version_negotiation(
    native: Native,
    admin: Actor,
    sent: tuple[int, int],
    suggested: tuple[int, int],
    answered: tuple[int, int],
) -> None:
    await seed(native.registry, admin)
    message = cl.resolution("88.100.1/demo-0001")
    message = replace(
        message,
        envelope=replace(
            message.envelope,
            major=sent[0],
            minor=sent[1],
            suggested_major=suggested[0],
            suggested_minor=suggested[1],
        ),
    )
    answer = await native.udp(message)
    assert answer.header.response_code == 1
    assert answer.envelope.version == answered
    assert answer.envelope.suggested == c.OUR_VERSION


async def test_site_info_and_signed_answers(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    info = await native.udp(cl.request(c.OC_GET_SITE_INFO, c.HandleOnly(b"/").to_bytes()))
    site = SiteInfo.from_bytes(info.body)
    server = site.servers[0]
    assert {(i.protocol, i.port) for i in server.interfaces} >= {(1, native.port), (0, native.port)}
    key = decode_public_key(server.public_key)
    certified = cl.resolution("88.100.1/demo-0001", flags=c.FLAG_PUBL | c.FLAG_CERT | c.FLAG_RRDG)
    for ask in (native.udp, native.tcp):
        answer = await ask(certified)
        assert answer.flag(c.FLAG_CERT) and answer.credential
        raw = c.Message(
            answer.envelope,
            answer.header,
            c.request_digest(certified, answer.envelope.version) + answer.body,
            answer.credential,
        )
        assert isinstance(key, rsa.RSAPublicKey)
        assert verify_response(raw, key)


async def test_fast_path_patches_ids_and_digests(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    first = cl.resolution("88.100.1/demo-0001", flags=c.FLAG_PUBL | c.FLAG_RRDG)
    await native.udp(first)
    hits = native.engine.cache.stats.hits
    for _ in range(3):
        again = cl.resolution("88.100.1/demo-0001", flags=c.FLAG_PUBL | c.FLAG_RRDG)
        answer = await native.udp(again)  # the client checks the digest of *this* request
        assert answer.envelope.request_id == again.envelope.request_id
        assert answer.header.response_code == 1
    assert native.engine.cache.stats.hits >= hits + 3
    # A write evicts: the next answer shows it.
    await native.registry.handles.set_values(
        admin, "88.100.1/demo-0001", [text(1, "URL", "https://new")], overwrite=True
    )
    fresh = await native.udp(cl.resolution("88.100.1/demo-0001", indexes=[1]))
    assert cl.values_of(fresh)[0].data == b"https://new"


async def test_multi_datagram_answers_and_requests(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    answer = await native.udp(cl.resolution("88.100.1/big"))
    assert cl.values_of(answer)[0].data == b"x" * 1500
    # A request larger than one datagram is reassembled before it is answered.
    many_types = [f"TYPE-{i:04d}-padding" for i in range(60)] + ["BLOB"]
    request = cl.resolution("88.100.1/big", types=many_types)
    assert len(request.to_bytes()) > c.UDP_PACKET
    answer = await native.udp(request)
    assert cl.values_of(answer)[0].type == "BLOB"


# --- bad input --------------------------------------------------------------------


def udp_raw(native: Native, data: bytes, wait: float = 0.5) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(data, (native.host, native.port))
        received = []
        try:
            while True:
                received.append(sock.recv(2048))
        except TimeoutError:
            return received


async def test_garbage_unknown_operations_and_trailing_bytes(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    assert await asyncio.to_thread(udp_raw, native, b"\x00" * 10) == []  # no amplification
    [reply] = await asyncio.to_thread(udp_raw, native, b"\x02\x05" + b"\xff" * 60)
    assert c.Message.from_bytes(reply).header.response_code == 4
    unknown = await native.udp(cl.request(999, b"whatever"))
    assert unknown.header.response_code == 5
    admin_over_udp = await native.udp(
        cl.request(c.OC_DELETE_HANDLE, c.HandleOnly(b"88.100.1/x").to_bytes())
    )
    assert admin_over_udp.header.response_code == 4
    base = cl.resolution("88.100.1/demo-0001")
    padded = replace(base, body=base.body + b"\x00\x00\x00\x00extra")
    assert (await native.udp(padded)).header.response_code == 1
    # Over TCP a message claiming 2^30 bytes gets RC 4, then the connection ends.
    reader, writer = await asyncio.open_connection(native.host, native.port)
    writer.write(c.Envelope(length=2**30).to_bytes())
    answer = c.Message.from_bytes(await asyncio.wait_for(reader.read(4096), 5))
    assert answer.header.response_code == 4
    assert await asyncio.wait_for(reader.read(10), 5) == b""
    writer.close()


async def test_tcp_persistent_multiplexed_and_idle_timeout(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    session = await native.session()
    try:
        asks = [cl.resolution("88.100.1/demo-0001", indexes=[i]) for i in (1, 2, 3)] + [
            cl.resolution("88.100.1/none")
        ]
        answers = await asyncio.gather(*(session.send(m) for m in asks))
        assert [a.envelope.request_id for a in answers] == [m.envelope.request_id for m in asks]
        assert [a.header.response_code for a in answers] == [1, 1, 1, 100]
        await asyncio.sleep(1.6)  # idle longer than the server allows (1 s here)
        with pytest.raises(cl.ClientError):
            await session.send(cl.resolution("88.100.1/demo-0001"))
    finally:
        await session.close()


# --- authentication and administration -------------------------------------------


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


# --- behaviour against the reference's own answers --------------------------------


VECTORS = vectors.load("handle-native-reference.json")["vectors"]


async def test_answers_match_the_reference_server(native: Native, admin: Actor) -> None:
    """Load the records the reference held, send its captured requests, and compare
    the answers: codes, flags, versions, ids and bodies are the reference's — all but
    the server's own fields (its clock, site serial, advertised version) and the
    order of values (the reference keeps creation order, idnode index order)."""
    await hosted_enterprise(native.registry, admin, 1, prefix="88.100.1")
    records: dict[str, tuple[HandleValue, ...]] = {}
    for vector in VECTORS:
        datagrams = vector.get("response_datagrams", [])
        if len(datagrams) != 1:
            continue
        answer = c.Message.from_bytes(bytes.fromhex(datagrams[0]))
        described = vector["description"]
        if (
            answer.opcode == 1
            and answer.header.response_code == 1
            and ("type" not in described and "index" not in described)
        ):
            body = c.HandleValues.from_bytes(answer.body)
            records[body.handle.decode()] = body.values
    async with native.registry.services.change(admin) as change:
        for name, values in records.items():
            key = native.registry.services.grammar.parse(name).key
            if await store.get_identifier(change.conn, key) is None:
                await store.insert_identifier(
                    change.conn,
                    name=name,
                    name_key=key,
                    prefix_id=None,
                    template_id=None,
                    values=values,
                )
    compared = 0
    for vector in VECTORS:
        if (
            vector["transport"] != "udp"
            or "datagrams" in vector["name"]
            or vector["name"].startswith(("V6", "V8", "V10", "V11"))
        ):
            continue
        request = bytes.fromhex(vector["request"])
        expected = c.Message.from_bytes(bytes.fromhex(vector["response_datagrams"][0]))
        [raw] = await asyncio.to_thread(udp_raw, native, request)
        ours = c.Message.from_bytes(raw)
        assert ours.header.response_code == expected.header.response_code, vector["name"]
        if expected.header.response_code == 1:
            # The same values; the reference lists them in creation order, we by index.
            theirs = c.HandleValues.from_bytes(expected.body)
            mine = c.HandleValues.from_bytes(ours.body)
            assert mine.handle == theirs.handle
            assert mine.values == tuple(sorted(theirs.values, key=lambda v: v.index))
        else:
            assert ours.body == expected.body, vector["name"]
        assert ours.header.flags == expected.header.flags, vector["name"]
        assert ours.envelope.version == expected.envelope.version
        assert ours.envelope.request_id == expected.envelope.request_id
        compared += 1
    assert compared >= 5


class EnterpriseNode(asyncio.DatagramProtocol):
    """A stand-in enterprise node: answers every resolution with one URL value,
    with the request digest asked for (``digest="right"``), without it, or wrong."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.seen: list[c.Message] = []
        self.digest = "right"
        self.delay = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = c.Message.from_bytes(data)
        self.seen.append(request)
        asked = c.ResolutionRequest.from_bytes(request.body).handle
        body = c.HandleValues(asked, (text(1, "URL", "https://enterprise.example/x"),)).to_bytes()
        flags = request.header.flags & ~c.FLAG_RRDG
        if request.flag(c.FLAG_RRDG) and self.digest != "none":
            digest = c.request_digest(request, request.envelope.version)
            if self.digest == "wrong":
                digest = digest[:-1] + bytes([digest[-1] ^ 1])
            body = digest + body
            flags |= c.FLAG_RRDG
        answer = c.Message(
            replace(request.envelope), replace(request.header, response_code=1, flags=flags), body
        )
        assert self.transport is not None
        send = self.transport.sendto
        asyncio.get_running_loop().call_later(self.delay, send, answer.to_bytes(), addr)


async def test_recursion_when_asked_and_allowed(native: Native, admin: Actor) -> None:
    loop = asyncio.get_running_loop()
    transport, enterprise = await loop.create_datagram_endpoint(
        EnterpriseNode, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        _, routed = await native.registry.enterprises.apply(admin, application(2))
        await native.registry.enterprises.configure(
            admin, routed.prefix, SiteRoute(4, "127.0.0.1", udp_port=port)
        )
        name = f"{routed.prefix}/thing"
        recursive = c.FLAG_RECU | c.FLAG_PUBL
        # Not allowed (the default): a referral, whatever the client asks.
        assert (await native.udp(cl.resolution(name, flags=recursive))).header.response_code == 302
        native.engine.recursion = Recursor()
        native.engine.cache.clear()  # as a restart with the new setting would
        answer = await native.udp(cl.resolution(name, flags=recursive))
        assert cl.values_of(answer)[0].data == b"https://enterprise.example/x"
        assert enterprise.seen[-1].header.recursion == 1
        assert enterprise.seen[-1].flag(c.FLAG_RRDG)  # asked, so the answer can be checked
        # Asked again, over UDP and TCP: from the cache, the enterprise node is not asked.
        again = await native.udp(cl.resolution(name, flags=recursive))
        assert cl.values_of(again) == cl.values_of(answer)
        assert cl.values_of(await native.tcp(cl.resolution(name, flags=recursive)))
        tcp_asked = len(enterprise.seen)
        assert cl.values_of(await native.tcp(cl.resolution(name, flags=recursive)))
        assert len(enterprise.seen) == tcp_asked
        # Many clients asking at once for a name not cached: one question to the node.
        enterprise.delay = 0.2
        before = len(enterprise.seen)
        together = [cl.resolution(f"{routed.prefix}/burst", flags=recursive) for _ in range(8)]
        answers = await asyncio.gather(*(native.udp(m) for m in together))
        assert {a.header.response_code for a in answers} == {1}
        assert len(enterprise.seen) == before + 1
        enterprise.delay = 0.0
        # An answer that does not prove it answers this request is not passed on.
        for digest in ("none", "wrong"):
            enterprise.digest = digest
            refused = await native.udp(cl.resolution(f"{name}-{digest}", flags=recursive))
            assert refused.header.response_code == rc.RC_SERVER_NOT_RESP, digest
        enterprise.digest = "right"
        # Without REC the client still gets the referral.
        assert (
            await native.udp(cl.resolution(name, flags=c.FLAG_PUBL))
        ).header.response_code == 302
        deep = cl.resolution(name, flags=recursive)
        deep = replace(deep, header=replace(deep.header, recursion=svc.MAX_RECURSION - 1))
        assert (await native.udp(deep)).header.response_code == 6
    finally:
        transport.close()


async def test_retransmissions_get_the_same_answer(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    raw = cl.resolution("88.100.1/demo-0001").to_bytes()
    first = await asyncio.to_thread(udp_raw, native, raw)
    second = await asyncio.to_thread(udp_raw, native, raw)
    assert len(first) == len(second) == 1
    a, b = c.Message.from_bytes(first[0]), c.Message.from_bytes(second[0])
    assert (a.envelope, a.body) == (b.envelope, b.body)
    assert replace(a.header, expiration=0) == replace(b.header, expiration=0)


# --- bounds against hostile or broken clients ---------------------------------------


async def test_signed_errors_only_over_tcp(native: Native, admin: Actor) -> None:
    """A spoofed datagram must not buy an RSA signature and a reply many times its size."""
    await seed(native.registry, admin)
    unknown = cl.request(999, b"", flags=c.FLAG_CERT | c.FLAG_RRDG)
    over_udp = await native.udp(unknown)
    assert (over_udp.header.response_code, over_udp.credential) == (5, b"")
    over_tcp = await native.tcp(unknown)
    assert over_tcp.header.response_code == 5 and over_tcp.credential
    found = await native.udp(cl.resolution("88.100.1/demo-0001", flags=c.FLAG_CERT))
    assert found.header.response_code == 1 and found.credential


async def test_fast_path_refuses_what_the_slow_path_refuses(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    request = cl.resolution("88.100.1/demo-0001", types=["URL"])
    assert (await native.udp(request)).header.response_code == 1  # now cached
    raw = bytearray(request.to_bytes())
    raw[40:44] = (60_000).to_bytes(4, "big")  # a body length past the end, no credential
    del raw[-4:]
    raw[16:20] = (len(raw) - 20).to_bytes(4, "big")
    for _ in range(2):  # before and after anything else is cached
        [reply] = await asyncio.to_thread(udp_raw, native, bytes(raw))
        assert c.Message.from_bytes(reply).header.response_code == 4
    # The reserved header byte is part of what the digest covers, on both paths.
    odd = replace(request, header=replace(request.header, flags=c.FLAG_RRDG, reserved=7))
    expected = hashlib.sha256(odd.to_bytes()[20:-4]).digest()
    for _ in range(2):  # the slow path, then the cached one
        [reply] = await asyncio.to_thread(udp_raw, native, odd.to_bytes())
        assert c.Message.from_bytes(reply).body[1:33] == expected


async def test_logged_in_connections_are_not_served_the_anonymous_cache(
    native: Native, admin: Actor
) -> None:
    prefix = await seed(native.registry, admin)
    ask = cl.resolution(f"{prefix}/demo-0001", flags=0)
    anonymous = await native.tcp(ask)
    assert 4 not in [v.index for v in cl.values_of(anonymous)]  # and now it is cached
    session = await native.session(node_secret())
    try:
        assert (await session.login()).header.response_code == 1
        same = replace(ask, envelope=replace(ask.envelope, request_id=cl.next_request_id()))
        assert 4 in [v.index for v in cl.values_of(await session.send(same))]
    finally:
        await session.close()


async def test_pending_challenges_are_bounded_and_owned(native: Native, admin: Actor) -> None:
    prefix = await seed(native.registry, admin)

    def delete() -> c.Message:
        return cl.request(c.OC_DELETE_HANDLE, c.HandleOnly(f"{prefix}/big".encode()).to_bytes())

    greedy = await native.session()
    owner = await native.session(node_secret())
    try:
        codes = [(await greedy.send(delete())).header.response_code for _ in range(10)]
        assert codes == [402] * challenges.MAX_PENDING_PER_CONNECTION + [3] * 2
        # Another connection naming this connection's challenge neither uses nor spoils it.
        asked = delete()
        challenge = await owner.send(asked)
        session_id = challenge.envelope.session_id
        nonce = cred.Challenge.from_bytes(challenge.body).nonce
        proof = node_secret().answer(nonce, c.request_digest(asked, challenge.envelope.version)[1:])
        answer = cl.request(c.OC_CHALLENGE_RESPONSE, proof.to_bytes(), session_id=session_id)
        stolen = await greedy.send(answer)
        assert stolen.header.response_code == challenges.RC_AUTHEN_TIMEOUT
        again = replace(answer, envelope=replace(answer.envelope, request_id=cl.next_request_id()))
        assert (await owner.send(again, answering=asked)).header.response_code == 1
    finally:
        await owner.close()
        await greedy.close()
    for _ in range(50):  # the server notices the closed connections
        if not native.service.challenges.pending:
            break
        await asyncio.sleep(0.02)
    assert native.service.challenges.pending == {}


async def test_key_derivations_run_off_the_event_loop(
    native: Native, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(native.registry, admin)
    nonce, digest = b"n" * 16, b"d" * 32
    costly = encode_secret_key_proof(
        cred.MAC_PBKDF2_HMAC_SHA1, ADMIN_SK.encode(), nonce + digest, iterations=100_000
    )
    verify = cred.VerifyChallenge(NODE.encode(), 300, nonce, digest, costly)
    ask = cl.request(c.OC_VERIFY_CHALLENGE, verify.to_bytes())
    verdict = asyncio.create_task(native.udp(ask))
    await asyncio.sleep(0.005)
    resolved = await native.udp(cl.resolution("88.100.1/demo-0001"))
    assert not verdict.done()  # the resolution did not wait for the derivation
    assert resolved.header.response_code == 1
    assert (await verdict).body == b"\x01"
    # Beyond the queue, RC 3 at once rather than a backlog.
    monkeypatch.setattr(challenges, "MAX_SLOW_PROOFS_WAITING", 1)
    answers = await asyncio.gather(*(native.tcp(ask) for _ in range(4)))
    codes = sorted(a.header.response_code for a in answers)
    assert codes[0] == 1 and codes[-1] == 3
    too_strong = cred.Pbkdf2Proof(b"s", cred.MAX_PBKDF2_ITERATIONS + 1, 160, b"m").to_bytes()
    refused = cred.VerifyChallenge(NODE.encode(), 300, nonce, digest, b"\x22" + too_strong)
    answer = await native.tcp(cl.request(c.OC_VERIFY_CHALLENGE, refused.to_bytes()))
    assert answer.body == b"\x00"


async def test_long_lists_are_continued(
    native: Native, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = await seed(native.registry, admin)
    for n in range(12):
        await native.registry.handles.create(
            admin, f"{prefix}/item-{n:02}", [text(1, "URL", "https://x.example")], overwrite=False
        )
    monkeypatch.setattr(handle_admin, "LIST_MESSAGE_BYTES", 100)
    listing = cl.request(c.OC_LIST_HANDLES, c.HandleOnly(prefix.encode()).to_bytes())
    answer = await native.tcp(listing, credentials=node_secret())
    names = {n.decode() for n in c.HandleList.from_bytes(answer.body).handles}
    assert names == {f"{prefix}/item-{n:02}" for n in range(12)} | {
        f"{prefix}/demo-0001",
        f"{prefix}/big",
    }
    # On the wire: several messages, CN on all but the last, each a list of its own.
    session = await native.session(node_secret())
    try:
        assert (await session.login()).header.response_code == 1
        session._pump.cancel()  # read the raw messages here instead
        with contextlib.suppress(asyncio.CancelledError):
            await session._pump
        raw = cl.request(c.OC_LIST_HANDLES, c.HandleOnly(prefix.encode()).to_bytes())
        session.writer.write(raw.to_bytes())
        messages = []
        while not messages or messages[-1].flag(c.FLAG_CONT):
            head = await session.reader.readexactly(20)
            rest = await session.reader.readexactly(c.message_length(head))
            messages.append(c.Message.from_bytes(head + rest))
        assert len(messages) >= 3
        assert all(m.flag(c.FLAG_CONT) for m in messages[:-1])
        assert sum(len(c.HandleList.from_bytes(m.body).handles) for m in messages) == 14
    finally:
        await session.close()


class _Stalled:
    """A service whose slow path waits until released (to count what piles up)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.answered = 0

    def fast(self, data: bytes, *, udp: bool) -> list[bytes] | None:
        return None

    def refuse(self, data: bytes, remote: str, *, udp: bool) -> list[bytes] | None:
        return None

    async def handle(self, data: bytes, connection: svc.Connection) -> list[bytes]:
        await self.release.wait()
        self.answered += 1
        return [data]

    def forget(self, connection: svc.Connection) -> None:
        pass


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 9) if name == "peername" else None

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        pass


async def test_tcp_requests_in_flight_are_bounded() -> None:
    service = _Stalled()
    sweeper = IdleSweeper(60)
    protocol = srv.TcpProtocol(service, sweeper)  # type: ignore[arg-type]
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    request = cl.resolution("88.100.1/demo-0001").to_bytes()
    protocol.data_received(request * 200)  # pipelined in one read
    assert len(protocol._tasks) == srv.MAX_IN_FLIGHT and not transport.reading
    service.release.set()
    for _ in range(2000):
        await asyncio.sleep(0)
        assert len(protocol._tasks) <= srv.MAX_IN_FLIGHT
        if service.answered == 200:
            break
    assert service.answered == 200 and len(transport.written) == 200 and transport.reading
    protocol.connection_lost(None)
    sweeper.stop()


async def test_udp_work_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _Stalled()
    protocol = srv.UdpProtocol(service)  # type: ignore[arg-type]
    protocol.connection_made(_Transport())  # type: ignore[arg-type]
    monkeypatch.setattr(srv, "MAX_UDP_IN_FLIGHT", 4)
    for _ in range(10):
        protocol.datagram_received(cl.resolution("88.100.1/x").to_bytes(), ("127.0.0.1", 9))
    assert len(protocol._tasks) == 4  # the rest shed: clients retry
    # Reassembly: fragments larger than a datagram's payload are refused, sources are
    # capped, and the bytes held are accounted for and released.
    big = c.fragments(cl.request(c.OC_RESOLUTION, b"\x00" * 2000).to_bytes())
    oversized = big[0] + b"\x00" * 100
    protocol.datagram_received(oversized, ("127.0.0.1", 9))
    assert protocol._partial == {} and protocol._partial_bytes == 0
    for n in range(srv.MAX_REASSEMBLIES_PER_SOURCE + 4):
        first = cl.request(c.OC_RESOLUTION, b"\x00" * 2000, request_id=1000 + n).to_bytes()
        protocol.datagram_received(c.fragments(first)[0], ("127.0.0.2", 9))
    assert len(protocol._partial) == srv.MAX_REASSEMBLIES_PER_SOURCE
    assert protocol._partial_bytes == srv.MAX_REASSEMBLIES_PER_SOURCE * c.UDP_PAYLOAD
    protocol._next_purge = 0.0
    monkeypatch.setattr(srv.time, "monotonic", lambda: 1e12)  # all of them stale
    protocol.datagram_received(big[1], ("127.0.0.3", 9))
    assert len(protocol._partial) == 1 and protocol._per_source == {"127.0.0.3": 1}
    assert protocol._partial_bytes == len(big[1]) - c.ENVELOPE_SIZE
    service.release.set()
