"""SM2 identities over the native protocol on loopback TCP, proven as the IDIS SDK
proves them — M = SM3(nonce ‖ request digest), an SM2 signature over M as the message
with the identity's handle as user ID, named "SM3" — by gmalg (an independent
implementation) and by our own client: IDIS login (op 2001) and the challenge answer
to an administrative request (op 200); and every way a proof can be wrong refused
with RC 403."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

import gmalg
import pytest

from registry.crypto.sm2 import N, Sm2PrivateKey
from registry.models import HandleValue
from registry.services import Actor
from registry.values import HS_ADMIN, HS_PUBKEY, AdminRef, encode_public_key
from resolver.handle import challenges
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from tests.factories import handle_value as text
from tests.native_node import Native, seed

IDENTITY_INDEXES = {300: "form 1", 301: "form 2", 302: "form 3"}


def _der_integer(number: int) -> bytes:
    body = number.to_bytes(number.bit_length() // 8 + 1, "big")
    return b"\x02" + bytes([len(body)]) + body


def _der_signature(r: int, s: int) -> bytes:
    body = _der_integer(r) + _der_integer(s)
    return b"\x30" + bytes([len(body)]) + body


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _sm3(data: bytes) -> bytes:
    hasher = gmalg.SM3()
    hasher.update(data)
    return bytes(hasher.value())


@dataclass(frozen=True)
class GmalgSm2:
    """An SM2 identity's proofs made by gmalg, as the IDIS SDK makes them — or, with
    the knobs, made wrong in one way."""

    handle: str
    index: int
    scalar: bytes
    user_id: bytes | None = None
    """Sign under this ID instead of the handle."""
    alter: Callable[[bytes, bytes], tuple[bytes, bytes]] | None = None
    """Change the nonce and digest before signing."""
    raw: bool = False
    hash_name: bytes = b"SM3"
    signature: Callable[[int, int], bytes] | None = None
    """Write r and s some other way."""

    def answer(
        self, nonce: bytes, digest: bytes, version: tuple[int, int] = c.OUR_VERSION
    ) -> cred.ChallengeAnswer:
        if self.alter is not None:
            nonce, digest = self.alter(nonce, digest)
        uid = self.user_id if self.user_id is not None else self.handle.encode()
        r_bytes, s_bytes = gmalg.SM2(sk=self.scalar, uid=uid).sign(_sm3(nonce + digest))
        r, s = int.from_bytes(r_bytes, "big"), int.from_bytes(s_bytes, "big")
        if self.signature is not None:
            signed = self.signature(r, s)
        elif self.raw:
            signed = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signed = _der_signature(r, s)
        proof = _lp(self.hash_name) + _lp(signed)
        return cred.ChallengeAnswer(b"HS_PUBKEY", self.handle.encode(), self.index, proof)


@dataclass
class Sm2World:
    native: Native
    prefix: str
    handle: str
    key: Sm2PrivateKey
    stored: dict[int, bytes]

    def who(self, index: int = 300, **knobs: object) -> GmalgSm2:
        return GmalgSm2(self.handle, index, self.key.to_bytes(), **knobs)  # type: ignore[arg-type]

    def modify(self, index: int = 1) -> c.Message:
        body = c.HandleValues(
            f"{self.prefix}/owned".encode(), (text(index, "URL", f"https://sm2/{index}"),)
        )
        return cl.request(c.OC_MODIFY_VALUE, body.to_bytes())


def _forms(key: Sm2PrivateKey) -> dict[int, bytes]:
    """The identity's key in the three forms of IDIS software, written here by hand."""
    public = key.public_key()
    return {
        300: encode_public_key(public),
        301: _lp(b"SM2_PUB_KEY") + b"\x00\x00" + _lp(public.to_der()),
        302: public.to_pem(),
    }


@pytest.fixture
async def world(native: Native, admin: Actor) -> Sm2World:
    prefix = await seed(native.registry, admin)
    key = Sm2PrivateKey.generate()
    handle = f"{prefix}/sm2-admin"
    stored = _forms(key)
    await native.registry.handles.create(
        admin,
        handle,
        [HandleValue(index, HS_PUBKEY, data) for index, data in stored.items()],
        overwrite=False,
    )
    admins = [
        HandleValue(100 + n, HS_ADMIN, AdminRef(handle, index, 0x0070).to_bytes())
        for n, index in enumerate(stored)
    ]
    await native.registry.handles.create(
        admin, f"{prefix}/owned", [text(1, "URL", "u"), *admins], overwrite=False
    )
    return Sm2World(native, prefix, handle, key, stored)


async def test_the_identity_is_stored_byte_for_byte(world: Sm2World) -> None:
    answer = await world.native.udp(cl.resolution(world.handle))
    assert {v.index: v.data for v in cl.values_of(answer)} == world.stored


@pytest.mark.parametrize("index", sorted(IDENTITY_INDEXES))
@pytest.mark.parametrize("raw", [False, True], ids=["der", "raw"])
async def test_an_sm2_identity_logs_in_with_op_2001(world: Sm2World, index: int, raw: bool) -> None:
    session = await world.native.session(world.who(index, raw=raw))  # type: ignore[arg-type]
    try:
        login = await session.login()
        assert login.header.response_code == 1, cl.error_text(login)
        # Bound to the connection: the administrative request needs no proof now.
        answer = await session.send(world.modify())
        assert answer.header.response_code == 1, cl.error_text(answer)
        assert (await session.login()).header.response_code == challenges.RC_RELOGIN
    finally:
        await session.close()
    resolved = await world.native.udp(cl.resolution(f"{world.prefix}/owned", indexes=[1]))
    assert cl.values_of(resolved)[0].data == b"https://sm2/1"


@pytest.mark.parametrize("index", sorted(IDENTITY_INDEXES))
async def test_an_sm2_identity_answers_the_challenge_of_an_admin_request(
    world: Sm2World, index: int
) -> None:
    answer = await world.native.tcp(world.modify(), world.who(index))  # type: ignore[arg-type]
    assert answer.header.response_code == 1, cl.error_text(answer)


async def test_our_client_logs_in_with_an_sm2_key(world: Sm2World) -> None:
    """The client side (its signature checked by gmalg in tests/test_sm2_pubkey.py)."""
    for index in IDENTITY_INDEXES:
        ours = cl.KeyPair(world.handle, index, world.key)
        session = await world.native.session(ours)
        try:
            assert (await session.login()).header.response_code == 1
        finally:
            await session.close()
    any_index = cl.KeyPair(world.handle, 0, world.key)
    assert (await world.native.tcp(world.modify(), any_index)).header.response_code == 1


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


WRONG_PROOFS: dict[str, dict[str, object]] = {
    "ID with the index": {"user_id": b"300:88.100.1/sm2-admin"},
    "default ID": {"user_id": b"1234567812345678"},
    "altered nonce": {"alter": lambda nonce, digest: (_flip_last(nonce), digest)},
    "altered digest": {"alter": lambda nonce, digest: (nonce, _flip_last(digest))},
    "another hash name": {"hash_name": b"SHA-256"},
    "r = 0": {"signature": lambda r, s: _der_signature(0, s)},
    "s = n": {"signature": lambda r, s: _der_signature(r, N)},
    "trailing bytes": {"signature": lambda r, s: _der_signature(r, s) + b"\x00"},
    "63 raw bytes": {"signature": lambda r, s: (r.to_bytes(32, "big") + s.to_bytes(32, "big"))[1:]},
}


@pytest.mark.parametrize("case", sorted(WRONG_PROOFS))
async def test_wrong_proofs_are_refused_403_and_log_nobody_in(world: Sm2World, case: str) -> None:
    knobs = WRONG_PROOFS[case]
    session = await world.native.session(world.who(300, **knobs))  # type: ignore[arg-type]
    try:
        login = await session.login()
        assert login.header.response_code == 403, case
        answer = await session.send(world.modify())
        assert answer.header.response_code == challenges.RC_LOGIN_FIRST
    finally:
        await session.close()


async def test_a_wrong_key_is_refused(world: Sm2World) -> None:
    stranger = GmalgSm2(world.handle, 300, Sm2PrivateKey.generate().to_bytes())
    assert (await world.native.tcp(world.modify(), stranger)).header.response_code == 403  # type: ignore[arg-type]
    session = await world.native.session(stranger)  # type: ignore[arg-type]
    try:
        assert (await session.login()).header.response_code == 403
    finally:
        await session.close()


async def test_a_proof_for_another_session_is_refused(world: Sm2World) -> None:
    """Two connections log in at once; each one's proof fails the other's challenge."""
    first = await world.native.session()
    second = await world.native.session()
    who = world.who(300)
    try:
        login = cl.request(
            c.OC_LOGIN_ID_SYSTEM,
            cred.Login(world.handle.encode(), 300).to_bytes(),
            flags=c.FLAG_RRDG,
        )
        challenged = {}
        for name, session in (("first", first), ("second", second)):
            request = replace(
                login, envelope=replace(login.envelope, request_id=cl.next_request_id())
            )
            answer = await session.send(request)
            assert answer.header.response_code == 402
            nonce = cred.Challenge.from_bytes(answer.body).nonce
            digest = c.request_digest(request, answer.envelope.version)[1:]
            challenged[name] = (request, answer.envelope.session_id, nonce, digest)

        def reply(session_id: int, proof: cred.ChallengeAnswer) -> c.Message:
            return cl.request(c.OC_CHALLENGE_RESPONSE, proof.to_bytes(), session_id=session_id)

        first_request, first_session, first_nonce, first_digest = challenged["first"]
        second_request, second_session, _, _ = challenged["second"]
        for_first = who.answer(first_nonce, first_digest)
        # The first connection's proof, answering the second's challenge: refused.
        refused = await second.send(reply(second_session, for_first), answering=second_request)
        assert refused.header.response_code == 403
        # Answering the first connection's challenge from the second: not its business.
        foreign = await second.send(reply(first_session, for_first), answering=first_request)
        assert foreign.header.response_code == challenges.RC_AUTHEN_TIMEOUT
        # On its own connection the proof holds.
        accepted = await first.send(reply(first_session, for_first), answering=first_request)
        assert accepted.header.response_code == 1
        # And it cannot be used twice.
        again = await first.send(reply(first_session, for_first), answering=first_request)
        assert again.header.response_code == challenges.RC_AUTHEN_TIMEOUT
    finally:
        await first.close()
        await second.close()
