"""The native protocol's bounds against hostile or broken clients: no signatures over
UDP, the fast path refusing what the slow path refuses, the anonymous cache kept from
logged-in connections, pending challenges, key derivations off the event loop, long
lists, requests in flight and reassembly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import replace

import pytest

from registry.services import Actor
from resolver.handle import admin as handle_admin
from resolver.handle import challenges
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle import server as srv
from resolver.handle import service as svc
from resolver.handle.proofs import encode_secret_key_proof
from resolver.idle import IdleSweeper
from tests.factories import ADMIN_SK
from tests.factories import handle_value as text
from tests.native_node import NODE, Native, node_secret, seed, udp_raw


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
