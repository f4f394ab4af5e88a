"""The native protocol served over real UDP and TCP sockets on loopback: resolution,
referrals, versions, site info, the fast path, bad input, the reference server's own
answers, and recursion. Authentication and administration: test_handle_admin.py;
bounds against hostile clients: test_handle_bounds.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from registry import store
from registry.models import HandleValue, SiteRoute
from registry.services import Actor
from registry.values import SiteInfo, decode_public_key
from resolver import codes as rc
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import service as svc
from resolver.handle.proofs import verify_response
from resolver.handle.recursion import Recursor
from tests import vectors
from tests.factories import application, hosted_enterprise
from tests.factories import handle_value as text
from tests.native_node import Native, seed, udp_raw

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
    hits = native.resolver.cache.stats.hits
    for _ in range(3):
        again = cl.resolution("88.100.1/demo-0001", flags=c.FLAG_PUBL | c.FLAG_RRDG)
        answer = await native.udp(again)  # the client checks the digest of *this* request
        assert answer.envelope.request_id == again.envelope.request_id
        assert answer.header.response_code == 1
    assert native.resolver.cache.stats.hits >= hits + 3
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
        missing = []
        for name, values in records.items():
            key = native.registry.services.grammar.parse(name).key
            if await store.get_identifier(change.conn, key) is None:
                missing.append(store.NewIdentifier(name, key, None, None, values))
        await store.insert_identifiers(change.conn, missing)
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


async def test_retransmissions_get_the_same_answer(native: Native, admin: Actor) -> None:
    await seed(native.registry, admin)
    raw = cl.resolution("88.100.1/demo-0001").to_bytes()
    first = await asyncio.to_thread(udp_raw, native, raw)
    second = await asyncio.to_thread(udp_raw, native, raw)
    assert len(first) == len(second) == 1
    a, b = c.Message.from_bytes(first[0]), c.Message.from_bytes(second[0])
    assert (a.envelope, a.body) == (b.envelope, b.body)
    assert replace(a.header, expiration=0) == replace(b.header, expiration=0)


# --- recursion --------------------------------------------------------------------


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
        native.resolver.recursion = Recursor()
        native.resolver.cache.clear()  # as a restart with the new setting would
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
