"""Real client addresses behind a reverse proxy: the parsing of ``Forwarded`` and
``X-Forwarded-*``, then a real node whose limits, lockout, access log and
credentials-over-HTTPS rule follow a trusted proxy's word and only its word,
and last a real nginx in front (when nginx is installed)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from idnode.config import Config, ConfigError, Endpoint
from idnode.node import Node, compose
from idnode.servers import build_http_app
from idnode.site import node_site
from loadtest.refdns import free_port
from registry.secrets import NodeKey
from registry.services import Registry
from registry.tokens import TokenIssuer
from resolver.http.forwarded import (
    Origin,
    TrustedProxies,
    forwarded_elements,
    forwarded_for,
    parse_node,
    walk,
)
from resolver.resolution import Resolver
from tests.factories import ADMIN_AK, ADMIN_SK, needs, self_signed

ADMIN_BASIC = {
    "Authorization": "Basic " + base64.b64encode(f"300%3A0.NA/88.100:{ADMIN_SK}".encode()).decode()
}


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: what a proxy forwards does not touch the database."""
    path = tmp_path / "idnode.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hop"),
    [
        ("192.0.2.43", IPv4Address("192.0.2.43")),
        ("192.0.2.43:47011", IPv4Address("192.0.2.43")),
        ("[2001:db8:cafe::17]", IPv6Address("2001:db8:cafe::17")),
        ("[2001:db8:cafe::17]:4711", IPv6Address("2001:db8:cafe::17")),
        ("[2001:db8::1]:_port", IPv6Address("2001:db8::1")),
        ("2001:DB8::1", IPv6Address("2001:db8::1")),  # X-Forwarded-For writes IPv6 bare
        (" 198.51.100.17 ", IPv4Address("198.51.100.17")),
        ("unknown", "unknown"),
        ("UNKNOWN:80", "unknown"),
        ("_gazonk", "_gazonk"),
        ("_SEVKISEK:_p1", "_SEVKISEK"),
    ],
)
def test_a_node_is_an_address_or_an_identifier(text: str, hop: object) -> None:
    assert parse_node(text) == hop


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.org",
        "[2001:db8::1",
        "[192.0.2.1]",
        "[2001:db8::1]4711",
        "[2001:db8::1]:",
        "192.0.2.1:99999",
        "192.0.2.1:http",
        "192.0.2.256",
        "_",
        "_bad name",
        "unix:",
        "1.2.3.4, 5.6.7.8",
        "\x00",
    ],
)
def test_anything_else_is_no_node(text: str) -> None:
    assert parse_node(text) is None


def test_forwarded_elements_as_rfc_7239_writes_them() -> None:
    assert forwarded_elements(['for="_gazonk"']) == [{"for": "_gazonk"}]
    assert forwarded_elements(['For="[2001:db8:cafe::17]:4711"']) == [
        {"for": "[2001:db8:cafe::17]:4711"}
    ]
    assert forwarded_elements(["for=192.0.2.60;proto=http;by=203.0.113.43"]) == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
    ]
    assert forwarded_elements(["for=192.0.2.43, for=198.51.100.17"]) == [
        {"for": "192.0.2.43"},
        {"for": "198.51.100.17"},
    ]
    # Several header lines are one list; empty elements and pairs are nothing.
    assert forwarded_elements(["for=192.0.2.43", ' , for="\\_x";;proto=HTTPS ,']) == [
        {"for": "192.0.2.43"},
        {"for": "_x", "proto": "HTTPS"},
    ]


@pytest.mark.parametrize(
    ("value", "elements"),
    [
        ("for=192.0.2.1;for=192.0.2.2", [None]),  # a parameter twice
        ("for", [None]),
        ("for=a b", [None]),
        ("=192.0.2.1", [None]),
        ('for="192.0.2.1', [None]),
        ('for=192.0.2.1"', [None]),
        ("for=192.0.2.1 ; proto", [None]),
        ("garbage, for=192.0.2.7", [None, {"for": "192.0.2.7"}]),
        # A quote a client opens cannot swallow the element its proxy appends.
        ('for="x, for="[2001:db8::1]"', [None, {"for": "[2001:db8::1]"}]),
    ],
)
def test_malformed_forwarded_elements_are_none(
    value: str, elements: list[dict[str, str] | None]
) -> None:
    assert forwarded_elements([value]) == elements


def test_forwarded_for_entries_across_lines() -> None:
    assert forwarded_for(["203.0.113.7, ,198.51.100.1", "10.0.0.2"]) == [
        "203.0.113.7",
        "198.51.100.1",
        "10.0.0.2",
    ]


def test_the_walk_skips_trusted_hops_and_stops_at_garbage() -> None:
    trusted = TrustedProxies(["10.0.0.0/8", "127.0.0.1"])
    hops = [parse_node(a) for a in ("198.51.100.1", "203.0.113.7", "10.0.0.3", "10.0.0.2")]
    peer = IPv4Address("127.0.0.1")
    assert walk(hops, peer, trusted.__contains__) == 1  # 203.0.113.7
    assert walk(hops, IPv4Address("192.0.2.9"), trusted.__contains__) == 4  # untrusted peer
    assert walk([], peer, trusted.__contains__) == 0
    assert walk([IPv4Address("10.0.0.9")], peer, trusted.__contains__) == 0  # all trusted
    assert walk([IPv4Address("203.0.113.7"), None], peer, trusted.__contains__) == 2
    assert walk([None, IPv4Address("10.0.0.5")], peer, trusted.__contains__) == 1


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


TRUSTED = TrustedProxies(["127.0.0.0/8", "::1/128", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "headers", "origin"),
    [
        # nginx, one hop.
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.7")], Origin("203.0.113.7", None)),
        ("::1", [("X-Forwarded-For", "2001:db8::7")], Origin("2001:db8::7", None)),
        (
            "::ffff:127.0.0.1",  # a dual-stack socket's view of an IPv4 proxy
            [("X-Forwarded-For", "203.0.113.7")],
            Origin("203.0.113.7", None),
        ),
        # Trusted hops skipped, the first untrusted one is the client.
        (
            "127.0.0.1",
            [("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.3"), ("X-Forwarded-For", "")],
            Origin("203.0.113.7", None),
        ),
        ("127.0.0.1", [("X-Forwarded-For", "10.1.1.1, 10.0.0.3")], Origin("10.1.1.1", None)),
        # Garbage: the last good hop.
        (
            "127.0.0.1",
            [("X-Forwarded-For", "203.0.113.7, junk, 10.0.0.3")],
            Origin("10.0.0.3", None),
        ),
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.7, unix:")], None),
        # RFC 7239, IPv6 with a port, identifiers that are no address.
        (
            "127.0.0.1",
            [("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https')],
            Origin("2001:db8:cafe::17", "https"),
        ),
        ("127.0.0.1", [("Forwarded", "for=unknown")], Origin("unknown", None)),
        ("127.0.0.1", [("Forwarded", "for=198.51.100.1, for=_hidden")], Origin("_hidden", None)),
        (
            "127.0.0.1",
            [("Forwarded", "for=198.51.100.1;proto=http;by=junk")],
            Origin("198.51.100.1", "http"),
        ),
        (
            "127.0.0.1",
            [("Forwarded", "for=198.51.100.1;proto=https, for=10.0.0.3;proto=http")],
            Origin("198.51.100.1", "https"),  # the scheme the client itself used
        ),
        ("127.0.0.1", [("Forwarded", "for=junk;proto=https")], Origin("127.0.0.1", "https")),
        ("127.0.0.1", [("Forwarded", "proto=https")], Origin("127.0.0.1", "https")),
        ("127.0.0.1", [("Forwarded", 'for="oops')], None),
        # X-Forwarded-For wins; the two are never mixed.
        (
            "127.0.0.1",
            [("Forwarded", "for=192.0.2.66;proto=https"), ("X-Forwarded-For", "203.0.113.7")],
            Origin("203.0.113.7", None),
        ),
        # The scheme: the trusted peer's (rightmost) word; only http and https.
        ("127.0.0.1", [("X-Forwarded-Proto", "https")], Origin("127.0.0.1", "https")),
        ("127.0.0.1", [("X-Forwarded-Proto", "http, HTTPS")], Origin("127.0.0.1", "https")),
        ("127.0.0.1", [("X-Forwarded-Proto", "gopher")], None),
        # From an untrusted peer, nothing counts.
        ("192.0.2.9", [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")], None),
        ("192.0.2.9", [("Forwarded", "for=203.0.113.7;proto=https")], None),
        ("", [("X-Forwarded-For", "203.0.113.7")], None),
        ("127.0.0.1", [], None),
    ],
)
def test_the_origin_a_trusted_peer_gives(
    peer: str, headers: list[tuple[str, str]], origin: Origin | None
) -> None:
    assert TRUSTED.origin(peer, _headers(*headers)) == origin


def test_no_trusted_proxies_believe_no_one() -> None:
    assert TrustedProxies([]).origin("127.0.0.1", _headers(("X-Forwarded-For", "1.2.3.4"))) is None


# --- a real node ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(
    registry: Registry, node_key: NodeKey, database_url: str, **settings: Any
) -> AsyncIterator[tuple[str, Node]]:
    """The node's HTTP app on a loopback port, with ``settings``: its parts
    composed from them as the node composes its own, over the registry's database."""
    config = Config(database_url=database_url, **settings)
    node = compose(config, registry.engine, node_key)
    node.registry.services.site = node_site(config, Endpoint("127.0.0.1", 8000), tls=False)
    runner = web.AppRunner(build_http_app(node), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", node
    finally:
        await runner.cleanup()


async def _status(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], json: Any = None
) -> tuple[int, Any]:
    async with session.request(
        "GET" if json is None else "POST", url, headers=headers, json=json
    ) as response:
        return response.status, await response.json(content_type=None)


async def _until_refused(
    session: aiohttp.ClientSession, url: str, headers: Callable[[int], dict[str, str]]
) -> int:
    """Requests sent until one is refused (429), at most 20 (each with the headers
    ``headers`` gives for its number): how many; 0 when none was."""
    for sent in range(1, 21):
        if (await _status(session, url, headers(sent)))[0] == 429:
            return sent
    return 0


def same(headers: dict[str, str]) -> Callable[[int], dict[str, str]]:
    return lambda _: headers


def forging(network: str) -> Callable[[int], dict[str, str]]:
    """An ``X-Forwarded-For`` naming another made-up client in ``network`` each time."""
    return lambda n: {"X-Forwarded-For": f"{network}.{n}"}


LIMITED = {"client_rate": 1, "client_burst": 3, "limits_exempt": "127.0.0.0/8,::1/128"}


async def test_a_forwarded_client_is_limited_by_its_own_address(
    registry: Registry, node_key: NodeKey, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {**LIMITED, "trusted_proxies": "127.0.0.1/32", "access_log": True}
    async with (
        serving(registry, node_key, database_url, **settings) as (base, _node),
        aiohttp.ClientSession() as session,
    ):
        url = f"{base}/api/site"
        first = {"X-Forwarded-For": "203.0.113.7"}
        with caplog.at_level(logging.INFO, logger="idnode.access"):
            sent = await _until_refused(session, url, same(first))
        assert sent >= 4  # past the burst of 3
        # Another client behind the same proxy has its own budget...
        assert (await _status(session, url, {"X-Forwarded-For": "198.51.100.1"}))[0] == 200
        assert (await _status(session, url, {"Forwarded": 'for="[2001:db8::9]:4711"'}))[0] == 200
        # ...and the proxy itself, asking for itself, is still exempt.
        assert await _until_refused(session, url, same({})) == 0
    remotes = [getattr(r, "fields", {}).get("remote") for r in caplog.records]
    assert remotes == ["203.0.113.7"] * sent  # the access log names the client


async def test_a_forged_header_from_an_untrusted_peer_changes_nothing(
    registry: Registry, node_key: NodeKey, database_url: str
) -> None:
    # The peer, 127.0.0.1, is no trusted proxy here, nor exempt: its own budget counts.
    settings = {**LIMITED, "limits_exempt": "", "trusted_proxies": "192.0.2.0/24"}
    async with (
        serving(registry, node_key, database_url, **settings) as (base, node),
        aiohttp.ClientSession() as session,
    ):
        url = f"{base}/api/site"
        # Every request names another client; all of them are the peer's budget.
        sent = await _until_refused(
            session,
            url,
            lambda n: {"X-Forwarded-For": f"203.0.113.{n}", "Forwarded": f"for=198.51.100.{n}"},
        )
        assert sent >= 4

        # The setting is read live (a SIGHUP reload): trusted now, the header counts.
        node.config = dataclasses.replace(node.config, trusted_proxies="127.0.0.0/8")
        assert (await _status(session, url, {"X-Forwarded-For": "203.0.113.99"}))[0] == 200


async def test_a_forwarded_client_is_locked_out_by_its_own_address(
    registry: Registry, node_key: NodeKey, database_url: str
) -> None:
    settings = {
        "trusted_proxies": "127.0.0.1",
        "limits_exempt": "127.0.0.0/8",
        "login_attempts": 3,
        "login_lockout": 60,
    }
    async with (
        serving(registry, node_key, database_url, **settings) as (base, _node),
        aiohttp.ClientSession() as session,
    ):
        url = f"{base}/identity/token"
        guesser, other = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.1"}
        for _ in range(3):
            status, body = await _status(session, url, guesser, {"username": "x", "password": "y"})
            assert status == 200 and body["status"] != 1  # SNMS: a failed login
        right = {"username": ADMIN_AK, "password": ADMIN_SK}
        status, body = await _status(session, url, guesser, right)  # another account, even
        assert status == 429 and "too many failed logins" in body["message"]
        status, body = await _status(session, url, other, right)
        assert status == 200 and body["status"] == 1


async def test_a_trusted_proxys_https_lets_rest_credentials_through(
    registry: Registry, node_key: NodeKey, database_url: str
) -> None:
    settings = {"trusted_proxies": "127.0.0.1", "allow_plain_http_auth": False}
    async with (
        serving(registry, node_key, database_url, **settings) as (base, node),
        aiohttp.ClientSession() as session,
    ):
        url = f"{base}/api/prefixes"
        status, body = await _status(session, url, ADMIN_BASIC)
        assert (status, body["responseCode"]) == (403, 402) and "HTTPS" in body["message"]
        for said in ({"X-Forwarded-Proto": "https"}, {"Forwarded": "for=192.0.2.1;proto=https"}):
            status, body = await _status(session, url, {**ADMIN_BASIC, **said})
            assert status == 200 and "0.NA/88.100" in body["prefixes"], said
        status, _ = await _status(session, url, {**ADMIN_BASIC, "X-Forwarded-Proto": "http"})
        assert status == 403

        node.config = dataclasses.replace(node.config, trusted_proxies="192.0.2.0/24")
        status, _ = await _status(session, url, {**ADMIN_BASIC, "X-Forwarded-Proto": "https"})
        assert status == 403  # from an untrusted peer the claim is ignored


async def test_a_bad_trusted_network_stops_the_start(
    registry: Registry, node_key: NodeKey, database_url: str
) -> None:
    config = Config(database_url=database_url, trusted_proxies="127.0.0.1, 10.0.0.0/33")
    node = Node(config, registry.engine, registry, TokenIssuer(node_key), Resolver(registry))
    with pytest.raises(ConfigError, match="^trusted_proxies: "):
        build_http_app(node)


# --- nginx in front ---------------------------------------------------------------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@contextlib.contextmanager
def nginx_in_front(directory: Path, upstream: str) -> Iterator[tuple[str, str]]:
    """nginx proxying to ``upstream`` as docs/operations.md shows: plain HTTP
    and HTTPS (terminated here); its two base URLs."""
    assert NGINX is not None
    cert, key, _ = self_signed(directory)
    http_port, https_port = free_port(), free_port()
    conf = directory / "nginx.conf"
    temp = " ".join(
        f"{kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"""
        worker_processes 1;
        pid {directory / "nginx.pid"};
        error_log {directory / "error.log"};
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            {temp}
            server {{
                listen 127.0.0.1:{http_port};
                listen 127.0.0.1:{https_port} ssl;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                location / {{
                    proxy_pass {upstream};
                    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                    proxy_set_header X-Forwarded-Proto $scheme;
                }}
            }}
        }}
        """
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", https_port)):
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.05)
        yield f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@needs(NGINX is not None, "nginx")
async def test_behind_a_real_nginx(
    registry: Registry, node_key: NodeKey, database_url: str, tmp_path: Path
) -> None:
    # The clients come from other loopback addresses than nginx's 127.0.0.1, which
    # alone is trusted and exempt.
    settings = {
        **LIMITED,
        "limits_exempt": "127.0.0.1/32",
        "trusted_proxies": "127.0.0.1/32",
        "allow_plain_http_auth": False,
    }
    async with serving(registry, node_key, database_url, **settings) as (base, _node):
        with nginx_in_front(tmp_path, base) as (plain, tls):

            def client(source: str) -> aiohttp.ClientSession:
                context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
                context.check_hostname = False
                connector = aiohttp.TCPConnector(local_addr=(source, 0), ssl=context)
                return aiohttp.ClientSession(connector=connector)

            async with client("127.0.0.2") as first, client("127.0.0.3") as second:
                # A forged X-Forwarded-For only comes before the address nginx saw.
                assert await _until_refused(first, f"{plain}/api/site", forging("192.0.2")) >= 4
                assert (await _status(second, f"{plain}/api/site", {}))[0] == 200
                # TLS ends at nginx; the node believes its X-Forwarded-Proto.
                status, body = await _status(second, f"{tls}/api/prefixes", ADMIN_BASIC)
                assert status == 200 and "0.NA/88.100" in body["prefixes"]
                status, _ = await _status(
                    second, f"{plain}/api/prefixes", {**ADMIN_BASIC, "X-Forwarded-Proto": "https"}
                )
                assert status == 403  # nginx writes its own scheme over the client's
