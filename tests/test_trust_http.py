"""Trusted resolution on a whole node on loopback: signed values pass through every
write and read path byte for byte, ``GET /api/verify/{handle}`` reports the chain
and the verdict, and ``idnode verify`` judges the same record over the native
protocol with its own trust root."""

from __future__ import annotations

import argparse
import base64
import html
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from idnode import verify_cmd
from idnode.node import Node
from idnode.servers import Servers
from registry import store
from registry.models import HandleValue
from registry.services import Actor
from registry.trust import Permission, public_key_pem, sign_jws
from resolver.handle import client as cl
from resolver.handle import codec as c
from tests.factories import ADMIN_AK, ADMIN_SK, hosted_enterprise, node_on_loopback, record_json
from tests.native_node import node_secret
from tests.trust_tools import Pki, dsa_key, rsa_key, url

PREFIX = "88.100.1"
ROOT = f"{PREFIX}/0.0"
ENT = f"300:{PREFIX}/ent"
ITEM = f"{PREFIX}/item"
NODE_ID = "300%3A0.NA/88.100"
BASIC = "Basic " + base64.b64encode(f"{NODE_ID}:{ADMIN_SK}".encode()).decode()


class Running:
    def __init__(self, node: Node, servers: Servers, session: aiohttp.ClientSession) -> None:
        self.node, self.servers, self.session = node, servers, session
        self.base = f"http://{servers.http}"

    async def http(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        data = None if body is None else json.dumps(body).encode()
        async with self.session.request(
            method, self.base + path, data=data, headers=headers or {}
        ) as resp:
            raw = await resp.read()
            try:
                return resp.status, json.loads(raw), raw
            except ValueError:
                return resp.status, None, raw

    async def admin(self) -> Actor:
        registry = self.node.registry
        return Actor((await registry.accounts.login(ADMIN_AK, ADMIN_SK)).principal, "test")


@pytest.fixture
async def running(database_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(public_key_pem(rsa_key().public_key()))
    async with (
        node_on_loopback(
            database_url,
            tmp_path,
            allow_plain_http_auth=True,
            udp_amplification=0,  # whole signed records over UDP (else: RC 2, ask over TCP)
            trust_root_handle=ROOT,
            trust_root_keys=str(root_pem),
        ) as (node, servers),
        aiohttp.ClientSession() as session,
    ):
        run = Running(node, servers, session)
        await hosted_enterprise(node.registry, await run.admin(), 1, prefix=PREFIX)
        yield run


# --- byte for byte ---------------------------------------------------------------------


def _signed_values() -> list[HandleValue]:
    """An HS_CERT in compact form and an HS_SIGNATURE in a pretty-printed JSON
    serialization (spaces, newlines, a trailing newline): bytes a re-encoding would change."""
    jws = sign_jws(b'{"iss":"300:88.100.1/ent","sub":"x"}', rsa_key())
    pretty = json.dumps(json.loads(jws.json_serialization()), indent=2) + "\n"
    return [
        url(1, "https://example.org/signed"),
        HandleValue(index=400, type="HS_CERT", data=jws.compact().encode()),
        HandleValue(index=401, type="HS_SIGNATURE", data=pretty.encode()),
    ]


def _rest_value(value: HandleValue, fmt: str) -> dict[str, Any]:
    data = value.data.decode() if fmt == "string" else base64.b64encode(value.data).decode()
    return {"index": value.index, "type": value.type, "data": {"format": fmt, "value": data}}


async def _reads(run: Running, name: str, token: str) -> dict[str, dict[int, bytes]]:
    """The values of ``name`` as every read path gives them, by index."""
    host, port = run.servers.handle.host, run.servers.handle.port
    found: dict[str, dict[int, bytes]] = {}
    for label, call in (("udp", cl.udp_call), ("tcp", cl.tcp_call)):
        answer = await call(host, port, cl.resolution(name))
        found[label] = {v.index: v.data for v in cl.values_of(answer)}
    status, body, _ = await run.http("GET", f"/api/handles/{name}")
    assert status == 200, body
    assert {v["data"]["format"] for v in body["values"]} == {"string"}
    found["rest"] = {v["index"]: v["data"]["value"].encode() for v in body["values"]}
    status, body, _ = await run.http("GET", f"/api/verify/{name}")
    found["verify"] = {v["index"]: v["data"]["value"].encode() for v in body["values"]}
    status, body, _ = await run.http(
        "GET",
        f"/identityv2/data/detail?handle={quote(name)}",
        None,
        {"Authorization": f"Bearer {token}"},
    )
    assert status == 200 and body["status"] == 1, body
    found["snms"] = {v["index"]: v["data"]["value"].encode() for v in body["data"]["value"]}
    status, _, page = await run.http("GET", f"/{name}?noredirect")
    assert status == 200
    found["page"] = {
        i: data for i, data in found["rest"].items() if html.escape(data.decode()).encode() in page
    }
    async with run.node.registry.services.read() as conn:
        events = await store.outbox_events(conn, limit=10_000)
    created = [e for e in events if e["event"] == "identifier.created" and e["subject"] == name]
    assert created, "the registration is queued for the top-level node"
    payload = created[-1]["payload"]
    found["sync"] = {v["index"]: base64.b64decode(v["data"]) for v in payload["values"]}
    return found


async def test_signed_values_pass_through_every_api_byte_for_byte(running: Running) -> None:
    values = _signed_values()
    wanted = {v.index: v.data for v in values}
    assert wanted[401].startswith(b"{\n") and wanted[401].endswith(b"}\n")
    # Written through the Handle REST API, as text and as base64 ...
    headers = {"Authorization": BASIC, "Content-Type": "application/json"}
    rest_name, b64_name = f"{PREFIX}/written-by-rest", f"{PREFIX}/written-as-base64"
    for name, fmt in ((rest_name, "string"), (b64_name, "base64")):
        body = {"values": [_rest_value(v, fmt) for v in values]}
        status, answer, _ = await running.http("PUT", f"/api/handles/{name}", body, headers)
        assert status == 201, answer
    # ... and through the native protocol's administration.
    native_name = f"{PREFIX}/written-natively"
    written = c.HandleValues(native_name.encode(), tuple(values)).to_bytes()
    create = cl.request(c.OC_CREATE_HANDLE, written)
    host, port = running.servers.handle.host, running.servers.handle.port
    done = await cl.tcp_call(host, port, create, credentials=node_secret())
    assert done.header.response_code == 1, cl.error_text(done)
    status, login, _ = await running.http(
        "POST",
        "/identity/token",
        {"username": ADMIN_AK, "password": ADMIN_SK},
        {"Content-Type": "application/json"},
    )
    token = login["data"]["token"]
    for name in (rest_name, b64_name, native_name):
        for path, seen in (await _reads(running, name, token)).items():
            assert seen == wanted, f"{name} read over {path} differs"


# --- the verdict over HTTP and on the command line -----------------------------------------


async def _store(run: Running, pki: Pki) -> None:
    admin = await run.admin()
    for handle, values in pki.records.items():
        await run.node.registry.handles.create(admin, handle, values, overwrite=True)


def _chain() -> Pki:
    """root 88.100.1/0.0 → enterprise 88.100.1/ent (DSA) → the record, all on the node."""
    pki = Pki(root=ROOT)
    pki.certify(ENT, dsa_key(), perms=(Permission("handlesUnderThisPrefix", f"0.NA/{PREFIX}"),))
    pki.sign_record(ITEM, [url(1, "https://a"), url(2, "https://b")], dsa_key(), ENT)
    return pki


async def test_verify_endpoint_reports_chain_and_verdict(running: Running) -> None:
    await _store(running, _chain())
    status, body, _ = await running.http("GET", f"/api/verify/{ITEM}")
    assert status == 200, body
    assert (body["responseCode"], body["handle"], body["trusted"], body["verdict"]) == (
        1,
        ITEM,
        True,
        "trusted",
    )
    assert body["trustRoot"] == ROOT and body["signedValues"] == [1, 2]
    chain = body["signatures"][0]["chain"]
    assert [link["location"] for link in chain] == [
        f"400:{ITEM}",
        f"400:{PREFIX}/ent",
        f"400:{ROOT}",
    ]
    assert all(link["signatureVerifies"] and link["dateInRange"] for link in chain)
    # A value changed after signing (through the REST API) is caught.
    headers = {"Authorization": BASIC, "Content-Type": "application/json"}
    changed = {"index": 1, "type": "URL", "data": "https://evil"}
    status, _, _ = await running.http("PUT", f"/api/handles/{ITEM}?index=1", changed, headers)
    assert status == 200
    status, body, _ = await running.http("GET", f"/api/verify/{ITEM}")
    assert (body["verdict"], body["message"]) == ("digest_mismatch", "bad digests")
    assert body["signatures"][0]["badDigestValues"] == [1]
    # Names that are not there answer as their resolution does.
    status, body, _ = await running.http("GET", f"/api/verify/{PREFIX}/absent")
    assert (status, body["responseCode"]) == (404, 100)
    status, body, _ = await running.http("GET", f"/api/verify/{PREFIX}")
    assert (status, body["handle"], body["verdict"]) == (200, PREFIX, "no_signatures")
    status, body, _ = await running.http("GET", "/api/verify/88.100.1%FF")
    assert (status, body["responseCode"]) == (400, 102)


def _args(running: Running, tmp_path: Path, **more: Any) -> argparse.Namespace:
    root_pem = tmp_path / "cli-root.pem"
    root_pem.write_bytes(public_key_pem(rsa_key().public_key()))
    settings: dict[str, Any] = {
        "name": ITEM,
        "server": str(running.servers.handle),
        "tcp": False,
        "http": False,
        "trust_root": ROOT,
        "root_key": [str(root_pem)],
        "config": None,
        "json": True,
    }
    settings.update(more)
    return argparse.Namespace(**settings)


async def test_idnode_verify_judges_over_the_native_protocol(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _store(running, _chain())
    assert await verify_cmd.run(_args(running, tmp_path)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "trusted" and len(report["signatures"][0]["chain"]) == 3
    # Another trust root key: the same chain is not trusted.
    other = tmp_path / "other.pem"
    other.write_bytes(public_key_pem(rsa_key(3).public_key()))
    args = _args(running, tmp_path, root_key=[str(other)], json=False, tcp=True)
    assert await verify_cmd.run(args) == 1
    text = capsys.readouterr().out
    assert text.startswith(f"{ITEM}: chain_not_trusted")
    assert "self-issued root (not trusted)" in text
    # The node's own verdict, over HTTP.
    http_args = _args(running, tmp_path, http=True, server=str(running.servers.http))
    assert await verify_cmd.run(http_args) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "trusted"
    # Nothing there, and nobody there.
    assert await verify_cmd.run(_args(running, tmp_path, name=f"{PREFIX}/absent")) == 1
    assert await verify_cmd.run(_args(running, tmp_path, server="127.0.0.1:1", tcp=True)) == 2
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("not a key")
    assert await verify_cmd.run(_args(running, tmp_path, root_key=[str(bad_key)])) == 2
    assert "bad.pem" in capsys.readouterr().err


async def test_snms_updates_keep_signed_values_byte_for_byte(running: Running) -> None:
    """An SNMS value holds at most 255 characters, so no JWS is written through it;
    but an SNMS update of a record leaves the values outside its template alone."""
    name = f"{PREFIX}/snms-updated"
    status, login, _ = await running.http(
        "POST",
        "/identity/token",
        {"username": ADMIN_AK, "password": ADMIN_SK},
        {"Content-Type": "application/json"},
    )
    bearer = {
        "Authorization": f"Bearer {login['data']['token']}",
        "Content-Type": "application/json",
    }
    status, body, _ = await running.http("POST", "/identityv2/data", record_json(name), bearer)
    assert status == 200 and body["status"] == 1, body
    signed = _signed_values()[1:]
    headers = {"Authorization": BASIC, "Content-Type": "application/json"}
    put = {"values": [_rest_value(v, "string") for v in signed]}
    status, answer, _ = await running.http(
        "PUT", f"/api/handles/{name}?index=400&index=401", put, headers
    )
    assert status == 201, answer
    changed = record_json(name, url="https://example.com/changed")
    status, body, _ = await running.http("PUT", "/identityv2/data", changed, bearer)
    assert status == 200 and body["status"] == 1, body
    answer = await cl.tcp_call(
        running.servers.handle.host, running.servers.handle.port, cl.resolution(name)
    )
    found = {v.index: v.data for v in cl.values_of(answer)}
    assert found[2000] == b"https://example.com/changed"
    assert {i: found[i] for i in (400, 401)} == {v.index: v.data for v in signed}
