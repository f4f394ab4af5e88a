"""The mock top-level node over real HTTP on loopback, against sync/PROTOCOL.md,
on its own store in SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from idnode.config import Endpoint
from registry.secrets import NodeKey
from registry.values import PROTOCOL_HTTP, SiteInfo
from resolver.handle import client as hclient
from resolver.handle import codec as c
from sync import auth
from sync.client import Reply, SyncClient
from tests.conftest import running_toplevel

SITE = b"\x00\x00\x00\x01site-of-88.100"
OTHER_SITE = b"\x00\x00\x00\x01site-of-88.200"


@dataclass
class Running:
    base: str
    session: aiohttp.ClientSession
    handle: Endpoint

    def client(self, node: str, node_key: NodeKey | None = None) -> SyncClient:
        key = auth.signing_key(node_key or NodeKey.generate())
        return SyncClient(self.base, node, key, session=self.session)

    async def get(self, path: str) -> Reply:
        async with self.session.get(self.base + path) as response:
            return Reply(response.status, await response.json())


@pytest.fixture
async def toplevel(database_url: str) -> AsyncIterator[Running]:
    async with running_toplevel(database_url) as (base, handle), aiohttp.ClientSession() as session:
        yield Running(base, session, handle)


def event(seq: int, kind: str, subject: str, **payload: object) -> dict[str, object]:
    return {
        "seq": seq,
        "event": kind,
        "subject": subject,
        "createdAt": "2026-11-25T08:00:00.000000Z",
        "payload": payload,
    }


async def registered(toplevel: Running, node: str = "88.100", site: bytes = SITE) -> SyncClient:
    client = toplevel.client(node)
    reply = await client.register(site, f"idnode {node}")
    assert reply.status == 200 and reply.body["registered"] is True, reply
    return client


async def test_info_is_unsigned(toplevel: Running) -> None:
    reply = await toplevel.get("/sync/v1/")
    assert reply.status == 200 and reply.body["versions"] == [1]


async def test_registration_binds_the_key(toplevel: Running) -> None:
    node_key = NodeKey.generate()
    client = toplevel.client("88.100", node_key)
    first = await client.register(SITE, "idnode 88.100")
    assert first.status == 200
    again = await toplevel.client("88.100", node_key).register(SITE + b"!", "renamed")
    assert again.status == 200 and again.body["routeSeq"] > first.body["routeSeq"]
    thief = await toplevel.client("88.100").register(SITE, "another key")
    assert (thief.status, thief.body["error"]) == (409, "conflict")
    outside = await toplevel.client("99.1").register(SITE, "not under 88")
    assert (outside.status, outside.body["error"]) == (400, "bad-request")
    # The signature must be the registered key's own (proof of possession).
    forged = toplevel.client("88.300")
    body = {
        "node": "88.300",
        "publicKey": base64.b64encode(
            auth.public_bytes(auth.signing_key(NodeKey.generate()).public_key())
        ).decode(),
        "site": base64.b64encode(SITE).decode(),
    }
    refused = await forged.call("POST", "/sync/v1/nodes", body)
    assert (refused.status, refused.body["error"]) == (401, "bad-signature")


async def test_events_are_idempotent_by_node_and_seq(toplevel: Running) -> None:
    client = await registered(toplevel)
    batch = [
        event(1, "prefix.allocated", "88.100.1", prefix="88.100.1", state=1),
        event(2, "identifier.created", "88.100.1/a", handle="88.100.1/a", values=[]),
        event(3, "identifier.created", "88.100.1/b", handle="88.100.1/b", values=[]),
    ]
    first = await client.call("POST", "/sync/v1/events", {"node": "88.100", "events": batch})
    assert first.status == 200
    assert (first.body["accepted"], first.body["duplicates"], first.body["highWater"]) == (
        [1, 2, 3],
        [],
        3,
    )
    again = await client.call("POST", "/sync/v1/events", {"node": "88.100", "events": batch})
    assert (again.body["accepted"], again.body["duplicates"]) == ([], [1, 2, 3])
    changed = [event(3, "identifier.created", "88.100.1/c", handle="88.100.1/c", values=[])]
    conflict = await client.call("POST", "/sync/v1/events", {"node": "88.100", "events": changed})
    assert [r["error"] for r in conflict.body["rejected"]] == ["conflict"]


async def test_out_of_order_events_fill_the_high_water_mark(toplevel: Running) -> None:
    client = await registered(toplevel)
    later = [event(5, "identifier.created", "88.100.1/e", handle="88.100.1/e", values=[])]
    reply = await client.call("POST", "/sync/v1/events", {"node": "88.100", "events": later})
    assert reply.body["accepted"] == [5] and reply.body["highWater"] == 0
    earlier = [
        event(s, "identifier.created", f"88.100.1/{s}", handle=f"88.100.1/{s}", values=[])
        for s in range(1, 5)
    ]
    reply = await client.call("POST", "/sync/v1/events", {"node": "88.100", "events": earlier})
    assert reply.body["accepted"] == [1, 2, 3, 4] and reply.body["highWater"] == 5


async def test_one_bad_event_does_not_fail_its_batch(toplevel: Running) -> None:
    client = await registered(toplevel)
    batch = [
        event(1, "identifier.created", "88.200.1/theirs", handle="88.200.1/theirs", values=[]),
        event(2, "identifier.created", "88.100.1/ours", handle="88.100.1/ours", values=[]),
        event(3, "something.else", "88.100.1/x"),
        event(4, "identifier.created", "1.2.156.86.1.1.7", handle="1.2.156.86.1.1.7"),
        event(5, "identifier.created", "1.2.156.86.1.1.8", prefix="88.100.1", values=[]),
        event(6, "prefix.allocated", "88.1000.1", prefix="88.1000.1"),  # 88.1000 ≠ 88.100
    ]
    reply = await client.call("POST", "/sync/v1/events", {"node": "88.100", "events": batch})
    assert reply.body["accepted"] == [2, 5]
    assert {r["seq"]: r["error"] for r in reply.body["rejected"]} == {
        1: "foreign-prefix",
        3: "unknown-event",
        4: "invalid",
        6: "foreign-prefix",
    }
    assert reply.body["highWater"] == 0  # 1 is missing: parked at the node, not stored here


@pytest.mark.parametrize(
    "body",
    [
        {"node": "88.100", "events": []},
        {"node": "88.100", "events": [event(2, "node.prefix", "88.100"), event(1, "x", "y")]},
        {"node": "88.100", "events": [event(0, "node.prefix", "88.100")]},
        {"node": "88.100", "events": "nope"},
        [1, 2],
    ],
)
async def test_malformed_batches(toplevel: Running, body: object) -> None:
    client = await registered(toplevel)
    reply = await client.call("POST", "/sync/v1/events", body)
    assert (reply.status, reply.body["error"]) == (400, "bad-request")


async def test_forged_replayed_and_foreign_requests_are_refused(toplevel: Running) -> None:
    client = await registered(toplevel)
    await registered(toplevel, "88.200", OTHER_SITE)
    body = json.dumps({"node": "88.100", "events": [event(1, "node.prefix", "88.100")]}).encode()
    headers = client.signed_headers("POST", "/sync/v1/events", body)

    async def send(headers: dict[str, str], data: bytes = body) -> Reply:
        async with toplevel.session.post(
            toplevel.base + "/sync/v1/events", data=data, headers=headers
        ) as response:
            return Reply(response.status, await response.json())

    assert (await send(headers)).status == 200
    replayed = await send(headers)
    assert (replayed.status, replayed.body["error"]) == (401, "replayed")
    tampered = await send(client.signed_headers("POST", "/sync/v1/events", body), body + b" ")
    assert (tampered.status, tampered.body["error"]) == (401, "bad-signature")
    unsigned = await send({"Content-Type": "application/json"})
    assert (unsigned.status, unsigned.body["error"]) == (401, "unsigned")
    an_hour_ago = SyncClient(
        client.base_url,
        client.node,
        client.key,
        session=toplevel.session,
        clock=lambda: time.time() - 3600,
    )
    stale = await send(an_hour_ago.signed_headers("POST", "/sync/v1/events", body))
    assert (stale.status, stale.body["error"]) == (401, "stale-timestamp")
    stranger = toplevel.client("88.300")
    unknown = await stranger.call("POST", "/sync/v1/events", {"node": "88.300", "events": []})
    assert (unknown.status, unknown.body["error"]) == (401, "unknown-node")
    # 88.100 writing in the name of 88.200: its signature is fine, the body is not its own.
    foreign = await client.call(
        "POST", "/sync/v1/events", {"node": "88.200", "events": [event(1, "node.prefix", "88.200")]}
    )
    assert (foreign.status, foreign.body["error"]) == (403, "foreign-node")


ENTERPRISE_SITE = b"\x00\x00\x00\x01enterprise-own-site"


async def routed(toplevel: Running) -> tuple[SyncClient, SyncClient]:
    """88.100 and 88.200 registered; 88.100.1 routed to its node, 88.100.2 to the
    enterprise's own site."""
    ours = await registered(toplevel)
    theirs = await registered(toplevel, "88.200", OTHER_SITE)
    own_site = base64.b64encode(ENTERPRISE_SITE).decode()
    reply = await ours.call(
        "POST",
        "/sync/v1/events",
        {
            "node": "88.100",
            "events": [
                event(1, "prefix.allocated", "88.100.1", prefix="88.100.1"),
                event(2, "prefix.configured", "88.100.2", hosted=False, site=own_site),
            ],
        },
    )
    assert reply.body["accepted"] == [1, 2]
    return ours, theirs


async def test_route_table_and_prefix_lookups(toplevel: Running) -> None:
    ours, theirs = await routed(toplevel)
    await theirs.call(
        "POST",
        "/sync/v1/events",
        {"node": "88.200", "events": [event(1, "prefix.allocated", "88.200.7")]},
    )
    pulled: list[dict[str, object]] = []
    since = 0
    for _ in range(10):  # bounded paging, two routes at a time
        page = await ours.call("GET", f"/sync/v1/routes?since={since}&limit=2")
        assert page.status == 200
        pulled += page.body["routes"]
        since = page.body["next"]
        if not page.body["more"]:
            break
    assert [r["prefix"] for r in pulled] == ["88.100", "88.200", "88.100.1", "88.100.2", "88.200.7"]
    assert [r["seq"] for r in pulled] == sorted(r["seq"] for r in pulled)
    by_prefix = {r["prefix"]: r for r in pulled}
    assert base64.b64decode(by_prefix["88.200.7"]["site"]) == OTHER_SITE
    assert by_prefix["88.100.2"]["hosted"] is False
    assert base64.b64decode(by_prefix["88.100.2"]["site"]) == ENTERPRISE_SITE
    nothing_new = await ours.call("GET", f"/sync/v1/routes?since={since}")
    assert (nothing_new.body["routes"], nothing_new.body["next"]) == ([], since)

    lookup = await toplevel.get("/sync/v1/prefixes/88.200.7.3")  # longest routed prefix
    assert (lookup.status, lookup.body["prefix"], lookup.body["node"]) == (
        200,
        "88.200.7",
        "88.200",
    )
    node_route = await toplevel.get("/sync/v1/prefixes/88.100.9")
    assert node_route.body["prefix"] == "88.100"
    missing = await toplevel.get("/sync/v1/prefixes/99.9")
    assert (missing.status, missing.body["error"]) == (404, "not-found")
    bad = await ours.call("GET", "/sync/v1/routes?since=-1")
    assert bad.status == 400


async def test_statistics_and_reconciliation_summary(toplevel: Running) -> None:
    client = await registered(toplevel)
    report = {"node": "88.100", "date": "2026-11-25", "resolutions": 100_000}
    assert (await client.call("PUT", "/sync/v1/stats/2026-11-25", report)).status == 200
    report["resolutions"] = 120_000  # a later report for the day wins
    assert (await client.call("PUT", "/sync/v1/stats/2026-11-25", report)).status == 200
    wrong_day = await client.call("PUT", "/sync/v1/stats/2026-11-26", report)
    assert wrong_day.status == 400

    names = ["88.100.1/a", "88.100.1/b", "88.100.2/z"]
    batch = [
        event(i + 1, "identifier.created", n, handle=n, values=[]) for i, n in enumerate(names)
    ]
    batch.append(event(4, "identifier.deleted", "88.100.1/b", handle="88.100.1/b"))
    await client.call("POST", "/sync/v1/events", {"node": "88.100", "events": batch})
    summary = await client.call("GET", "/sync/v1/nodes/88.100/summary")
    assert summary.status == 200 and summary.body["highWater"] == 4
    expected = hashlib.sha256(b"88.100.1/a\n").hexdigest()
    assert summary.body["prefixes"]["88.100.1"] == {"identifiers": 1, "digest": expected}
    assert summary.body["prefixes"]["88.100.2"]["identifiers"] == 1
    other = await client.call("GET", "/sync/v1/nodes/88.200/summary")
    assert other.status == 403


# --- prefix lookups over the native protocol ----------------------------------------


async def ask(
    toplevel: Running,
    name: str,
    *,
    tcp: bool = False,
    flags: int = c.FLAG_PUBL,
    types: tuple[str, ...] = (),
    indexes: tuple[int, ...] = (),
) -> tuple[int, str, dict[int, tuple[str, bytes]]]:
    """(response code, handle answered for, {index: (type, data)}) over UDP or TCP."""
    message = hclient.resolution(name, types=types, indexes=indexes, flags=flags | c.FLAG_RRDG)
    host, port = toplevel.handle.host, toplevel.handle.port
    call = hclient.tcp_call(host, port, message) if tcp else hclient.udp_call(host, port, message)
    answer = await call  # the client checks and strips the request digest it asked for
    code = answer.header.response_code
    if code not in (1, 302, 303):
        return code, "", {}
    body = c.HandleValues.from_bytes(answer.body, values_optional=True)
    values = {v.index: (v.type, v.data) for v in body.values}
    return code, body.handle.decode(), values


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_native_prefix_records_and_referrals(toplevel: Running, tcp: bool) -> None:
    await routed(toplevel)
    node = {1: ("HS_SITE", SITE), 2: ("HS_SITE.PREFIX", SITE), 3: ("DESC", b"idnode 88.100")}
    assert await ask(toplevel, "0.NA/88.100", tcp=tcp) == (1, "0.NA/88.100", node)
    assert await ask(toplevel, "88.100", tcp=tcp) == (1, "88.100", node)  # the bare form
    # A resolver asks for HS_SITE: the delegation (a subtype) comes along.
    code, _, values = await ask(toplevel, "0.na/88.100", tcp=tcp, types=("HS_SITE",))
    assert (code, sorted(values)) == (1, [1, 2])
    assert (await ask(toplevel, "0.NA/88.100", tcp=tcp, indexes=(3,)))[2] == {3: node[3]}
    assert (await ask(toplevel, "0.NA/88.100", tcp=tcp, types=("URL",)))[0] == 200
    # Enterprise prefixes with a route of their own: their HS_SITE, no delegation.
    assert await ask(toplevel, "0.NA/88.100.1", tcp=tcp) == (
        1,
        "0.NA/88.100.1",
        {1: ("HS_SITE", SITE)},
    )
    assert (await ask(toplevel, "0.NA/88.100.2", tcp=tcp))[2] == {1: ("HS_SITE", ENTERPRISE_SITE)}
    # Names under a routed prefix without a record here: a prefix referral to it.
    assert await ask(toplevel, "0.NA/88.100.99", tcp=tcp) == (
        303,
        "0.NA/88.100",
        {1: ("HS_SITE.PREFIX", SITE)},
    )
    assert await ask(toplevel, "88.100.1/SN-2026-0001", tcp=tcp) == (
        303,
        "0.NA/88.100.1",
        {1: ("HS_SITE.PREFIX", SITE)},
    )
    assert await ask(toplevel, "88.100.2/x", tcp=tcp) == (
        303,
        "0.NA/88.100.2",
        {1: ("HS_SITE.PREFIX", ENTERPRISE_SITE)},
    )
    assert (await ask(toplevel, "88.200.5.1/x", tcp=tcp))[1:] == (
        "0.NA/88.200",
        {1: ("HS_SITE.PREFIX", OTHER_SITE)},
    )
    # A client that takes no referrals (DNRF) is told the name is not served here.
    refused = await ask(toplevel, "88.100.1/x", tcp=tcp, flags=c.FLAG_PUBL | c.FLAG_DNRF)
    assert refused[0] == 301


async def test_native_root_unknown_and_foreign_names(toplevel: Running) -> None:
    await routed(toplevel)
    code, handle, values = await ask(toplevel, "0.NA/88")
    assert (code, handle, [t for t, _ in values.values()]) == (1, "0.NA/88", ["HS_SITE"])
    site = SiteInfo.from_bytes(values[1][1])  # its own site: where it answers natively
    assert (toplevel.handle.port, False) in [
        (i.port, i.protocol == PROTOCOL_HTTP) for i in site.servers[0].interfaces
    ]
    assert (await ask(toplevel, "0.NA/88.999"))[0] == 100
    assert (await ask(toplevel, "88.999/x"))[0] == 100
    assert (await ask(toplevel, "20.500/x"))[0] == 301  # not under 88
    assert (await ask(toplevel, "0.NA/20.500", tcp=True))[0] == 301


async def test_native_site_info_and_bad_requests(toplevel: Running) -> None:
    host, port = toplevel.handle.host, toplevel.handle.port
    info = await hclient.tcp_call(host, port, hclient.request(c.OC_GET_SITE_INFO))
    assert info.header.response_code == 1
    assert SiteInfo.from_bytes(info.body).servers[0].address_text == "127.0.0.1"
    create = hclient.request(c.OC_CREATE_HANDLE, c.HandleValues(b"88.100/x").to_bytes())
    refused = await hclient.tcp_call(host, port, create)
    assert refused.header.response_code == 5  # administration is the sync API's
    assert (await ask(toplevel, "/no-prefix"))[0] == 102
    # Bytes that are no message: RC 4 over TCP, and the connection stays usable.
    reader, writer = await asyncio.open_connection(host, port)
    try:
        junk = b"\x02\x0b" + b"\x00" * 14 + (30).to_bytes(4, "big") + b"\xff" * 30
        writer.write(junk)
        await writer.drain()
        head = await asyncio.wait_for(reader.readexactly(20), 5)
        answer = c.Message.from_bytes(head + await reader.readexactly(c.message_length(head)))
        assert answer.header.response_code == 4
    finally:
        writer.close()
    assert (await ask(toplevel, "0.NA/88"))[0] == 1
