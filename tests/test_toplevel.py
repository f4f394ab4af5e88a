"""The mock top-level node over real HTTP on loopback, against sync/PROTOCOL.md,
on its own store in SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from registry.secrets import NodeKey
from sync import auth
from sync.client import Reply, SyncClient
from tests.conftest import running_toplevel

SITE = b"\x00\x00\x00\x01site-of-88.100"
OTHER_SITE = b"\x00\x00\x00\x01site-of-88.200"


@dataclass
class Running:
    base: str
    session: aiohttp.ClientSession

    def client(self, node: str, node_key: NodeKey | None = None) -> SyncClient:
        key = auth.signing_key(node_key or NodeKey.generate())
        return SyncClient(self.base, node, key, session=self.session)

    async def get(self, path: str) -> Reply:
        async with self.session.get(self.base + path) as response:
            return Reply(response.status, await response.json())


@pytest.fixture
async def toplevel(database_url: str) -> AsyncIterator[Running]:
    async with running_toplevel(database_url) as base, aiohttp.ClientSession() as session:
        yield Running(base, session)


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


async def test_route_table_and_prefix_lookups(toplevel: Running) -> None:
    ours = await registered(toplevel)
    theirs = await registered(toplevel, "88.200", OTHER_SITE)
    own_site = base64.b64encode(b"enterprise-own-site").decode()
    await ours.call(
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
    assert base64.b64decode(by_prefix["88.100.2"]["site"]) == b"enterprise-own-site"
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
