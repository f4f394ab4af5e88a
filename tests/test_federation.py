"""Two secondary nodes and the mock top-level node, as real processes: each
node registers and mirrors its prefix upward, pulls the other's route, and
names under the other node's prefix then resolve — by referral (native RC
302, REST 300), by recursion where the node allows it (native REC, REST and
the redirect proxy), and by a client walking from the top-level node down
(``idnode resolve --follow``)."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from idnode.config import Endpoint
from loadtest.refdns import free_port
from registry.values import PROTOCOL_UDP, SiteInfo
from resolver.handle import client
from resolver.handle import codec as c
from tests.test_cli import ANY_PORTS, Server, run_idnode
from tests.test_sync_faults import toplevel, wait_until

pytestmark = pytest.mark.slow

SECRET = "fed-secret"


@dataclass
class RunningNode:
    prefix: str
    home: Path
    server: Server
    http: str
    handle: Endpoint

    @property
    def db(self) -> Path:
        return self.home / "node.db"

    def put(self, suffix: str, url: str) -> None:
        """Register ``<prefix>/<suffix>`` with one URL value, as the node's admin."""
        body = json.dumps([{"index": 1, "type": "URL", "data": url}]).encode()
        request = urllib.request.Request(
            f"{self.http}/api/handles/{self.prefix}/{suffix}", data=body, method="PUT"
        )
        identity = f"300%3A0.NA/{self.prefix}:{SECRET}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(identity).decode())
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201

    def synced(self) -> bool:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            pending = conn.execute(
                "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND NOT parked"
            ).fetchone()[0]
        return bool(pending == 0)

    def knows_route(self, prefix: str) -> bool:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            found = conn.execute(
                "SELECT count(*) FROM foreign_routes WHERE prefix = ?", (prefix,)
            ).fetchone()[0]
        return bool(found)


def start_node(
    home: Path,
    prefix: str,
    toplevel_url: str,
    *,
    recursion: bool,
    ports: tuple[str, ...] = ANY_PORTS,
) -> RunningNode:
    home.mkdir(exist_ok=True)
    env = {
        "IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'node.db'}",
        "IDNODE_NODE_PREFIX": prefix,
        "IDNODE_BOOTSTRAP_ADMIN": f"AK{prefix.replace('.', '')}:{SECRET}",
        "IDNODE_ALLOW_PLAIN_HTTP_AUTH": "true",
        "IDNODE_ALLOW_RECURSION": "true" if recursion else "false",
        "IDNODE_SYNC_TIMEOUT": "2",
    }
    assert run_idnode("migrate", cwd=home, env=env).returncode == 0
    server = Server("serve", *ports, "--toplevel", toplevel_url, cwd=home, env=env)
    http = server.wait_for_http(60)
    return RunningNode(prefix, home, server, http, listening(server, "handle"))


def listening(server: Server, service: str) -> Endpoint:
    lines = server.read_more(f"listening {service} ")
    line = next(line for line in lines if line.startswith(f"listening {service} "))
    return Endpoint.parse(line.split()[-1])


def get(url: str) -> tuple[int, dict[str, object], dict[str, str]]:
    """Status, JSON body (or {}) and headers, without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=15) as response:
            raw, status, headers = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read(), exc.code, dict(exc.headers)
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"text": raw.decode("utf-8", "replace")}
    return status, body, headers


def native(at: Endpoint, name: str, *, recursive: bool, tcp: bool = False) -> c.Message:
    flags = c.FLAG_PUBL | (c.FLAG_RECU if recursive else 0)
    message = client.resolution(name, flags=flags)
    call = client.tcp_call if tcp else client.udp_call
    return asyncio.run(call(at.host, at.port, message))


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[Server, Endpoint, RunningNode, RunningNode]]:
    """The top-level node, then node 88.200 (no recursion), then 88.100 (recursion
    allowed), each with an identifier mirrored upward and the other's route."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    top = toplevel(tmp_path, port)
    started: list[RunningNode] = []
    try:
        top_handle = listening(top, "handle")
        b = start_node(tmp_path / "b", "88.200", url, recursion=False)
        started.append(b)
        b.put("widget", "https://b.example/widget")
        assert wait_until(b.synced, 30)
        a = start_node(tmp_path / "a", "88.100", url, recursion=True)
        started.append(a)
        a.put("gadget", "https://a.example/gadget")
        assert wait_until(lambda: a.synced() and a.knows_route("88.200"), 30)
        # B delivers again, and pulls routes after the delivery: it learns 88.100.
        b.put("second", "https://b.example/second")
        assert wait_until(lambda: b.synced() and b.knows_route("88.100"), 30)
        yield top, top_handle, a, b
    finally:
        for node in started:
            node.server.stop()
        assert top.stop() == 0


def test_foreign_names_resolve_by_referral_recursion_and_walking(
    federation: tuple[Server, Endpoint, RunningNode, RunningNode],
) -> None:
    _, top_handle, a, b = federation

    # A client walks from the top-level node: 303 to the node, then the answer.
    for transport in ("--udp", "--tcp"):
        walked = run_idnode(
            "resolve",
            "88.200/widget",
            "--server",
            str(top_handle),
            transport,
            "--follow",
            "--json",
            cwd=a.home,
        )
        assert walked.returncode == 0, walked.stderr
        answer = json.loads(walked.stdout)
        assert answer["responseCode"] == 1
        assert answer["values"][0]["data"]["value"] == "https://b.example/widget"
        hops = [line for line in walked.stderr.splitlines() if line.startswith("asked ")]
        assert hops == [
            f"asked {top_handle}: response code 303",
            f"asked {b.handle}: response code 1",
        ]

    # Native, no REC: a service referral to B's HS_SITE, as the top-level node routed it.
    referred = native(a.handle, "88.200/widget", recursive=False)
    assert referred.header.response_code == 302
    body = c.HandleValues.from_bytes(referred.body, values_optional=True)
    assert body.handle == b"0.NA/88.200"
    site = SiteInfo.from_bytes(body.values[0].data)
    interfaces = [(i.port, i.protocol) for i in site.servers[0].interfaces]
    assert (b.handle.port, PROTOCOL_UDP) in interfaces

    # Native with REC at A, which allows recursion: B's answer, over UDP and TCP.
    for tcp in (False, True):
        answered = native(a.handle, "88.200/widget", recursive=True, tcp=tcp)
        assert client.values_of(answered)[0].data == b"https://b.example/widget"
    assert native(a.handle, "88.200/absent", recursive=True).header.response_code == 100
    # B does not allow recursion: REC or not, a referral to A.
    assert native(b.handle, "88.100/gadget", recursive=True).header.response_code == 302

    # REST: B refers (300, the JSON of HANDLE.NET); A resolves at B for its client.
    status, referral, _ = get(f"{b.http}/api/handles/88.100/gadget")
    assert (status, referral["responseCode"], referral["referralHandle"]) == (
        300,
        302,
        "0.NA/88.100",
    )
    assert referral["values"][0]["type"] == "HS_SITE"  # type: ignore[index]
    status, found, _ = get(f"{a.http}/api/handles/88.200/widget")
    assert (status, found["responseCode"]) == (200, 1)
    assert found["values"][0]["data"]["value"] == "https://b.example/widget"  # type: ignore[index]
    status, unknown, _ = get(f"{a.http}/api/handles/88.999/x")
    assert (status, unknown["responseCode"]) == (400, 301)  # no route: not here

    # The proxy at A redirects a browser to B's URL; B's page says who serves it.
    status, _, headers = get(f"{a.http}/88.200/widget")
    assert (status, headers["Location"]) == (302, "https://b.example/widget")
    status, page, _ = get(f"{b.http}/88.100/gadget?noredirect")
    assert status == 200 and "served by another node" in str(page["text"])

    # B stops: what A fetched is answered from its cache; new names get a
    # gateway error (REST 504, native RC 301), never a hang or a 500.
    assert b.server.stop() == 0
    status, cached, _ = get(f"{a.http}/api/handles/88.200/widget")
    assert (status, cached["responseCode"]) == (200, 1)
    assert client.values_of(native(a.handle, "88.200/widget", recursive=True))
    status, failed, _ = get(f"{a.http}/api/handles/88.200/never-asked")
    assert (status, failed["responseCode"]) == (504, 301)
    refused = native(a.handle, "88.200/never-asked-natively", recursive=True)
    assert refused.header.response_code == 301
