"""Data permissions hold on every protocol (one matrix, both databases).

One identifier — and the same values under its OID name — carries a public
URL, a restricted internal URL, two restricted values its owner granted to a
named enterprise, and a restricted value granted to nobody. The whole node runs
in process as ``idnode serve`` runs it (every listener on 127.0.0.1, one shared
resolver and answer cache) and is asked with real clients: the native client over
UDP and TCP (logged in where the protocol allows), aiohttp for REST, the proxy
and reverse lookup, dnspython for DNS. Each cell checks what is returned and
that nothing else is: no restricted string appears in any answer's bytes
unless the caller may read it. Then the grant is revoked and the formerly
granted enterprise sees public data only, at once, on a session opened before.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import dns.asyncquery
import dns.message
import dns.rdatatype
import pytest

from idnode.node import Node
from idnode.servers import Servers
from registry import store
from registry.dnsnames import ZoneNames
from registry.services import Actor, Registry
from registry.services.identifiers import SnmsRecord
from registry.services.templates import TemplateSpec
from registry.templates import ItemChange, RecordValue
from resolver.handle import client as cl
from resolver.handle import codec as c
from tests.conftest import ApiClient
from tests.factories import (
    ADMIN_AK,
    ADMIN_SK,
    USER_PASSWORD,
    hosted_enterprise,
    node_on_loopback,
    template_spec,
)

OWNER, GRANTED, OTHER = "88.100.1", "88.100.2", "88.100.3"
HANDLE = f"{OWNER}/LOT-2026-07"
OID = "1.2.156.86.1.1.7"
"""An identifier of 88.100.1 named by its OID (the node's arc, enterprise arc 1)."""
NAMES = (HANDLE, OID)
VERSION = "lot-1"
PUBLIC_URL = "https://example.com/lot/2026-07"
SECRETS = {
    "URL.internal": "https://erp.internal.example/lots/2026-07",
    "batch": "BATCH-Q7-4471",
    "inspection": "inspection-passed-cpk-1.67",
    "cost": "unit-cost-12.40-CNY",
}
"""Restricted values by type; the owner grants batch and inspection to 88.100.2."""
GRANTED_ITEMS = ("batch", "inspection")
DATA_TYPES = {"URL", *SECRETS}
SEES = {
    "anonymous": {"URL"},
    "owner": DATA_TYPES,
    "granted": {"URL", *GRANTED_ITEMS},
    "other": {"URL"},
    "admin": DATA_TYPES,
    "revoked": {"URL"},
}
"""Which data values each kind of caller reads."""

ITEMS = (
    ItemChange("内部链接", "URL.internal", 2000, True, 1, "string", None, None, False),
    ItemChange("网址", "URL", 2001, True, 1, "string", None, None, True),
    ItemChange("批次", "batch", 2002, True, 1, "string", None, None, False),
    # Public by default: the record restricts it with its own "auth".
    ItemChange("检验结果", "inspection", 2003, True, 1, "string", None, None, True),
    ItemChange("成本", "cost", 2004, True, 1, "string", None, None, False),
)


def record_json(handle: str) -> dict[str, Any]:
    def value(index: int, vtype: str, data: str, auth: str = "") -> dict[str, Any]:
        return {
            "index": index,
            "type": vtype,
            "auth": auth,
            "data": {"format": "string", "value": data},
        }

    return {
        "handle": handle,
        "templateVersion": VERSION,
        "value": [
            value(2000, "URL.internal", SECRETS["URL.internal"]),
            value(2001, "URL", PUBLIC_URL),
            value(2002, "batch", SECRETS["batch"]),
            value(2003, "inspection", SECRETS["inspection"], auth="restricted"),
            value(2004, "cost", SECRETS["cost"]),
        ],
    }


def basic(user: str, password: str) -> dict[str, str]:
    raw = f"{quote(user, safe='/')}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def identity_secret(prefix: str) -> str:
    return f"identity-secret-of-{prefix}"


@dataclass
class Caller:
    kind: str
    """A key of :data:`SEES`."""
    how: str
    headers: dict[str, str] = field(default_factory=dict)
    native: cl.SecretKey | None = None

    def __str__(self) -> str:
        return f"{self.kind} ({self.how})"


@dataclass
class Running:
    node: Node
    servers: Servers
    session: aiohttp.ClientSession
    callers: list[Caller] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.servers.http.port}"

    async def http(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> tuple[int, bytes, Mapping[str, str]]:
        async with self.session.request(
            method, self.base + path, headers=dict(headers or {}), allow_redirects=False, **kw
        ) as resp:
            return resp.status, await resp.read(), resp.headers

    async def snms(
        self, method: str, path: str, token: str | None, body: Any = None
    ) -> dict[str, Any]:
        headers = bearer(token) if token else {}
        status, raw, _ = await self.http(method, path, headers, json=body)
        assert status == 200, raw
        result: dict[str, Any] = json.loads(raw)
        return result


def check_sees(kind: str, seen: set[str], raw: bytes, where: str) -> None:
    """What a caller got: exactly the data values its kind reads, and no byte of another."""
    assert seen & DATA_TYPES == SEES[kind], where
    for vtype, secret in SECRETS.items():
        if vtype not in SEES[kind]:
            assert secret.encode() not in raw, f"{where}: {vtype} leaked"
    if "URL" in SEES[kind]:
        assert PUBLIC_URL.encode() in raw, where


@pytest.fixture
async def running(database_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    async with (
        node_on_loopback(database_url, tmp_path, allow_plain_http_auth=True) as (node, servers),
        aiohttp.ClientSession() as session,
    ):
        yield Running(node, servers, session)


async def seed(run: Running) -> dict[str, str]:
    """Three enterprises, the record under both names, the grant and the callers;
    returns the SNMS tokens by enterprise prefix (and "admin")."""
    registry = run.node.registry
    admin = Actor((await registry.accounts.login(ADMIN_AK, ADMIN_SK)).principal, "test")
    for n, prefix in enumerate((OWNER, GRANTED, OTHER), start=1):
        await hosted_enterprise(registry, admin, n, prefix=prefix)
    await registry.templates.create(
        admin, TemplateSpec(prefix=OWNER, version=VERSION, items=ITEMS, carrier_type=2)
    )
    tokens = {}
    for n, prefix in enumerate((OWNER, GRANTED, OTHER), start=1):
        login = {"username": f"user{n}", "password": USER_PASSWORD}
        tokens[prefix] = (await run.snms("POST", "/identity/token", None, login))["data"]["token"]
    login = {"username": ADMIN_AK, "password": ADMIN_SK}
    tokens["admin"] = (await run.snms("POST", "/identity/token", None, login))["data"]["token"]
    # Each enterprise's Handle identity 300:0.NA/<prefix>, written by its own user.
    for prefix in (OWNER, GRANTED, OTHER):
        secret = {
            "index": 300,
            "type": "HS_SECKEY",
            "data": identity_secret(prefix),
            "permissions": "1100",
        }
        status, raw, _ = await run.http(
            "PUT", f"/api/handles/0.NA/{prefix}?index=300", bearer(tokens[prefix]), json=secret
        )
        assert status == 201, raw
    for name in NAMES:
        created = await run.snms("POST", "/identityv2/data", tokens[OWNER], record_json(name))
        assert created["status"] == 1, created
    keys = (await run.snms("POST", "/identity/access-key", tokens[GRANTED], {}))["data"]
    grant = {
        "prefix": OWNER,
        "granteePrefix": GRANTED,
        "templateVersion": VERSION,
        "items": list(GRANTED_ITEMS),
    }
    granted = await run.snms("POST", "/snms/api/data-grant", tokens[OWNER], grant)
    assert granted["status"] == 1, granted
    assert granted["data"]["granteePrefixes"] == [GRANTED]

    def identity(kind: str, prefix: str, secret: str) -> Caller:
        """The caller holding the secret of ``0.NA/<prefix>`` (index 300), over HTTP
        Basic and the native protocol."""
        native = cl.SecretKey(f"0.NA/{prefix}", 300, secret.encode())
        return Caller(kind, "Handle identity", basic(f"300:0.NA/{prefix}", secret), native)

    run.callers = [
        Caller("anonymous", "no credentials"),
        Caller("owner", "SNMS token", bearer(tokens[OWNER])),
        identity("owner", OWNER, identity_secret(OWNER)),
        Caller("granted", "SNMS token", bearer(tokens[GRANTED])),
        Caller("granted", "access key", basic(keys["accessKey"], keys["secretKey"])),
        identity("granted", GRANTED, identity_secret(GRANTED)),
        Caller("other", "SNMS token", bearer(tokens[OTHER])),
        identity("other", OTHER, identity_secret(OTHER)),
        Caller("admin", "SNMS token", bearer(tokens["admin"])),
        identity("admin", "88.100", ADMIN_SK),
    ]
    return tokens


# --- one check per protocol ---------------------------------------------------------


async def check_rest(run: Running, caller: Caller, kind: str) -> None:
    for path in (f"/api/handles/{HANDLE}", f"/api/oid/{OID}", f"/api/handles/{OID}?auth=true"):
        status, raw, headers = await run.http("GET", path, caller.headers)
        assert status == 200, (caller, path, raw)
        values = json.loads(raw)["values"]
        check_sees(kind, {v["type"] for v in values}, raw, f"REST {path} as {caller}")
        if caller.headers:
            assert headers.get("Cache-Control") == "no-store", (caller, path)
    # The owner's prefix record holds its identity's secret: for its administrators only.
    status, raw, _ = await run.http("GET", f"/api/handles/0.NA/{OWNER}", caller.headers)
    types = {v["type"] for v in json.loads(raw)["values"]}
    administers = kind in ("owner", "admin")
    assert ("HS_SECKEY" in types) == administers, caller
    assert (identity_secret(OWNER).encode() in raw) == administers, caller
    # Asking for public values only gets public values, whoever asks.
    status, raw, _ = await run.http("GET", f"/api/handles/{HANDLE}?publicOnly=true", caller.headers)
    check_sees("anonymous", {v["type"] for v in json.loads(raw)["values"]}, raw, f"{caller}")


async def check_proxy(run: Running, caller: Caller, kind: str) -> None:
    for name in NAMES:
        status, raw, headers = await run.http("GET", f"/{name}", caller.headers)
        assert status == 302, (caller, name, raw)
        # The redirect goes to the first URL the caller may read (the internal one
        # comes first by index): never to a restricted one for anyone else.
        wanted = SECRETS["URL.internal"] if "URL.internal" in SEES[kind] else PUBLIC_URL
        assert headers["Location"] == wanted, (caller, name)
        if caller.headers:
            assert headers.get("Cache-Control") == "no-store"
        for page_path in (f"/{name}?noredirect", f"/?handle={quote(name)}"):
            status, raw, headers = await run.http("GET", page_path, caller.headers)
            assert status == 200, (caller, page_path)
            shown = {t for t in DATA_TYPES if f"<td>{t}</td>".encode() in raw}
            check_sees(kind, shown, raw, f"proxy {page_path} as {caller}")


async def check_native(run: Running, caller: Caller, kind: str) -> None:
    port = run.servers.handle.port
    if caller.native is None:
        if caller.headers:
            return  # SNMS tokens and access keys are no native credentials
        for name in NAMES:
            # UDP is anonymous: even a request for everything (no PUBL flag) gets public data.
            for flags in (c.FLAG_PUBL, 0):
                answer = await cl.udp_call("127.0.0.1", port, cl.resolution(name, flags=flags))
                seen = {v.type for v in cl.values_of(answer)}
                check_sees(kind, seen, answer.to_bytes(), f"UDP {name} {flags:#x}")
                answer = await cl.tcp_call("127.0.0.1", port, cl.resolution(name, flags=flags))
                seen = {v.type for v in cl.values_of(answer)}
                check_sees(kind, seen, answer.to_bytes(), f"TCP {name} {flags:#x}")
        return
    session = await cl.TcpSession.open("127.0.0.1", port, caller.native)
    try:
        assert (await session.login()).header.response_code == 1, caller
        for name in NAMES:
            answer = await session.send(cl.resolution(name, flags=0))
            seen = {v.type for v in cl.values_of(answer)}
            check_sees(kind, seen, answer.to_bytes(), f"TCP {name} as {caller}")
            # A logged-in identity asking for public values only gets those.
            public = await session.send(cl.resolution(name))
            seen = {v.type for v in cl.values_of(public)}
            check_sees("anonymous", seen, public.to_bytes(), f"TCP PUBL {name} as {caller}")
    finally:
        await session.close()


async def check_reverse(run: Running, caller: Caller, kind: str) -> None:
    """Reverse lookup neither returns nor matches on what the caller may not read."""

    async def search(query: str) -> tuple[int, Any, bytes]:
        status, raw, _ = await run.http("GET", f"/hrls/handles?{query}", caller.headers)
        return status, json.loads(raw), raw

    if kind == "anonymous":
        status, body, _ = await search(f"URL={quote(PUBLIC_URL)}")
        assert (status, body["responseCode"]) == (401, 402)
        return
    both = sorted(NAMES)  # in name order: "1.2..." before "88.100..."
    status, body, _ = await search(f"URL={quote(PUBLIC_URL)}")
    assert (status, body) == (200, both), caller
    for vtype, secret in SECRETS.items():
        wanted = both if vtype in SEES[kind] else []
        for text in (secret, secret[:5] + "*"):
            status, body, _ = await search(f"{quote(vtype)}={quote(text)}")
            assert (status, body) == (200, wanted), (caller, vtype, text)
        # Conditions are AND-ed: a restricted one must not narrow a public one either.
        status, body, _ = await search(f"URL={quote(PUBLIC_URL)}&{quote(vtype)}=*")
        assert (status, body) == (200, wanted), (caller, vtype)
    status, records, raw = await search(f"URL={quote(PUBLIC_URL)}&retrieverecords=true")
    assert [r["handle"] for r in records] == both
    for record in records:
        seen = {v["type"] for v in record["values"]}
        check_sees(kind, seen, json.dumps(record).encode(), f"HRLS records as {caller}")
    check_sees(kind, SEES[kind], raw, f"HRLS records as {caller}")


async def check_dns(run: Running) -> None:
    """DNS is anonymous: the zone publishes public values only, over UDP and TCP."""
    registry = run.node.registry
    names = ZoneNames.of(run.node.config.dns_zone)
    port = run.servers.dns.port
    for name in NAMES:
        qname = names.of_identifier(registry.services.grammar.parse(name))
        for tcp in (False, True):
            ask = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
            got: dict[str, dns.message.Message] = {}
            for rdtype in ("TXT", "URI", "NAPTR", "ANY"):
                query = dns.message.make_query(qname, rdtype, use_edns=0)
                got[rdtype] = await ask(query, "127.0.0.1", port=port, timeout=3.0)
                raw = got[rdtype].to_wire()
                for vtype, secret in SECRETS.items():
                    assert secret.encode() not in raw, (name, rdtype, tcp, vtype)
            texts = [b"".join(r.strings).decode() for rrset in got["TXT"].answer for r in rrset]
            assert any(f"data={PUBLIC_URL}" in t for t in texts), texts
            assert not any(f"type={t}" in text for t in SECRETS for text in texts), texts
            uris = [r.target.decode() for rrset in got["URI"].answer for r in rrset]
            assert uris == [PUBLIC_URL], uris
            naptrs = [r.regexp.decode() for rrset in got["NAPTR"].answer for r in rrset]
            assert len(naptrs) == 1 and PUBLIC_URL in naptrs[0], naptrs


async def check_everywhere(run: Running, callers: list[Caller]) -> None:
    for caller in callers:
        kind = caller.kind
        await check_rest(run, caller, kind)
        await check_proxy(run, caller, kind)
        await check_native(run, caller, kind)
        await check_reverse(run, caller, kind)
    await check_dns(run)


async def test_data_permissions_on_every_protocol(running: Running) -> None:
    run = running
    tokens = await seed(run)
    anonymous = run.callers[0]
    # Anonymous first (answers cached), then everyone, then anonymous again: the
    # answers made for authenticated callers never reach the shared caches.
    await check_everywhere(run, run.callers)
    await check_everywhere(run, [anonymous])
    granted = [caller for caller in run.callers if caller.kind == "granted"]
    identity = next(caller for caller in granted if caller.native is not None)
    assert identity.native is not None
    session = await cl.TcpSession.open("127.0.0.1", run.servers.handle.port, identity.native)
    try:
        assert (await session.login()).header.response_code == 1
        before = await session.send(cl.resolution(HANDLE, flags=0))
        assert {v.type for v in cl.values_of(before)} & DATA_TYPES == SEES["granted"]
        revoke = {"prefix": OWNER, "granteePrefix": GRANTED, "templateVersion": VERSION}
        revoked = await run.snms("DELETE", "/snms/api/data-grant", tokens[OWNER], revoke)
        assert revoked["status"] == 1, revoked
        # At once, on the connection logged in before, and with the very credentials
        # (and verified-credential cache entries) used a moment ago.
        after = await session.send(cl.resolution(HANDLE, flags=0))
        check_sees("revoked", {v.type for v in cl.values_of(after)}, after.to_bytes(), "TCP")
    finally:
        await session.close()
    formerly = [Caller("revoked", g.how, g.headers, g.native) for g in granted]
    await check_everywhere(run, formerly)
    # Every grant and revocation is in the audit log, whose chain holds.
    async with run.node.registry.services.read() as conn:
        audit = await store.read_audit(conn)
    actions = [
        (e.action, e.actor.rpartition(":")[2], e.target)
        for e in audit
        if e.action.startswith("grant.")
    ]
    assert actions == [("grant.created", "user1", OWNER), ("grant.revoked", "user1", OWNER)]
    assert await run.node.registry.verify_audit() == []


async def test_concurrent_readers_never_share_a_view(running: Running) -> None:
    """Anonymous and authorized callers at once, on the same names: each gets its own."""
    run = running
    await seed(run)
    owner = run.callers[1]

    async def one(caller: Caller, name: str) -> None:
        status, raw, _ = await run.http("GET", f"/api/handles/{name}", caller.headers)
        assert status == 200
        check_sees(caller.kind, {v["type"] for v in json.loads(raw)["values"]}, raw, str(caller))

    work = [one(caller, n) for _ in range(10) for caller in (run.callers[0], owner) for n in NAMES]
    await asyncio.gather(*work)


# --- the admin API ----------------------------------------------------------------


async def test_grant_api(api: ApiClient, registry: Registry, admin: Actor) -> None:
    """/snms/api/data-grant: clear errors, scoping by template, re-scoping, listing,
    revocation by the owner or a node administrator, everything audited."""
    for n in (1, 2, 3):
        await hosted_enterprise(registry, admin, n, prefix=f"88.100.{n}")
    await registry.templates.create(admin, template_spec(OWNER, "2.0"))
    owner = Actor((await registry.accounts.login("user1", USER_PASSWORD)).principal, "test")
    for suffix, version in (("T1", "1.0"), ("T2", "2.0")):
        values = (
            RecordValue(2000, "URL", f"https://example.com/{suffix}"),
            RecordValue(2001, "name", suffix),
            RecordValue(2003, "secretCode", f"code-of-{suffix}"),  # restricted by the item
        )
        await registry.identifiers.create(owner, SnmsRecord(f"{OWNER}/{suffix}", version, values))
    user1, user2, user3 = [await api.login(f"user{n}", USER_PASSWORD) for n in (1, 2, 3)]
    path = "/snms/api/data-grant"
    good = {"prefix": OWNER, "granteePrefix": OTHER, "templateVersion": "2.0"}

    async def post(body: Any, token: str | None = user1) -> dict[str, Any]:
        status, answer = await api.call("POST", path, json=body, token=token or "")
        assert status == 200, answer
        return dict(answer)

    async def fails(body: Any, status: int, words: str, token: str | None = user1) -> None:
        answer = await post(body, token)
        assert answer["status"] == status and words in answer["message"], answer

    await fails(good, -1, "", token=None)
    await fails({**good, "prefix": GRANTED, "granteePrefix": OWNER}, -3, "not your prefix")
    await fails(good, -3, "not your prefix", token=user2)
    await fails({**good, "prefix": "88.100.99"}, -2, "no such prefix")
    await fails({**good, "prefix": "not a prefix"}, -2, "格式错误")
    await fails({**good, "granteePrefix": "88.100.77"}, -2, "no enterprise has that prefix")
    await fails({"prefix": OWNER, "granteeEntId": 99999}, -2, "no such enterprise")
    await fails({"prefix": OWNER}, -2, "granteePrefix")
    await fails({**good, "granteePrefix": OWNER}, -2, "owner")
    await fails({**good, "granteeEntId": 99999}, -2, "disagree")
    await fails({**good, "templateVersion": "9.9"}, -2, "no such template")
    await fails({**good, "items": ["nope"]}, -2, "no such item")
    await fails({**good, "items": ["HS_SECKEY"]}, -2, "never granted")
    await fails({**good, "items": "secretCode"}, -2, "JSON数组")
    await fails({**good, "items": [7]}, -2, "items[0]")
    await fails(["not", "an", "object"], -2, "JSON对象")

    async def secret_codes(token: str) -> set[str]:
        found = set()
        for suffix in ("T1", "T2"):
            status, body = await api.call("GET", f"/api/handles/{OWNER}/{suffix}", token=token)
            assert status == 200, body
            found |= {v["data"]["value"] for v in body["values"] if v["type"] == "secretCode"}
        return found

    assert await secret_codes(user3) == set()
    created = await post({**good, "items": ["secretcode"]})  # item types match in any case
    assert created["status"] == 1, created
    grant = created["data"]
    assert (grant["prefix"], grant["granteePrefixes"], grant["templateVersion"]) == (
        OWNER,
        [OTHER],
        "2.0",
    )
    assert grant["items"] == ["secretcode"]
    # Records of template 2.0 only; the grantee's view, nobody else's.
    assert await secret_codes(user3) == {"code-of-T2"}
    assert await secret_codes(user2) == set()
    # Reverse lookup matches on the granted values, and on those only.
    search = "/hrls/handles?secretCode=code-of-*"
    assert await api.call("GET", search, token=user3) == (200, [f"{OWNER}/T2"])
    assert await api.call("GET", search, token=user2) == (200, [])
    assert await api.call("GET", search, token=user1) == (200, [f"{OWNER}/T1", f"{OWNER}/T2"])
    assert await secret_codes(user1) == {"code-of-T1", "code-of-T2"}
    # The same prefix, grantee and version again: the one grant is re-scoped.
    rescoped = (await post({**good, "items": []}))["data"]
    assert rescoped["id"] == grant["id"] and rescoped["items"] == []

    async def listing(query: str, token: str) -> Any:
        status, body = await api.call("GET", f"{path}{query}", token=token)
        assert status == 200, body
        return body

    assert [g["id"] for g in (await listing(f"?prefix={OWNER}", user1))["data"]] == [grant["id"]]
    assert [g["id"] for g in (await listing("", user1))["data"]] == [grant["id"]]
    assert [g["id"] for g in (await listing("?received=true", user3))["data"]] == [grant["id"]]
    assert (await listing("?received=true", user2))["data"] == []
    assert (await listing("", user2))["data"] == []
    assert (await listing(f"?prefix={OWNER}", user3))["status"] == -3
    assert [g["id"] for g in (await listing("", api.token or ""))["data"]] == [grant["id"]]

    async def delete(query: str, token: str, body: Any = None) -> dict[str, Any]:
        status, answer = await api.call("DELETE", f"{path}{query}", json=body, token=token)
        assert status == 200, answer
        return dict(answer)

    assert (await delete(f"?id={grant['id']}", user3))["status"] == -3  # the grantee cannot
    assert (await delete("?id=99999", user1))["status"] == -2
    assert (await delete("?id=abc", user1))["status"] == -2
    assert (await delete("", user1, {"prefix": OWNER}))["status"] == -2
    by_scope = {"prefix": OWNER, "granteeEntId": grant["granteeEntId"], "templateVersion": "2.0"}
    assert (await delete("", api.token or "", by_scope))["status"] == 1  # a node administrator
    assert (await delete("", api.token or "", by_scope))["status"] == -2  # gone already
    assert await secret_codes(user3) == set()
    assert await api.call("GET", search, token=user3) == (200, [])
    async with registry.services.read() as conn:
        audit = await store.read_audit(conn)
    assert [e.action for e in audit if e.action.startswith("grant.")] == [
        "grant.created",
        "grant.updated",
        "grant.revoked",
    ]
    assert await registry.verify_audit() == []
    # Credentials that do not check out get a clear answer on the lookup page too.
    wrong = basic(f"300:0.NA/{OWNER}", "not-the-secret")
    status, page = await api.call("GET", f"/{OWNER}/T1?noredirect", token="", headers=wrong)
    assert status == 401 and "code-of-T1" not in page
