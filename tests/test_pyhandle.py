"""pyhandle 1.5.0, unmodified, against the node: over plain HTTP (as ``idnode
demo`` allows) and over HTTPS with authentication refused on plain HTTP."""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from pyhandle.handleclient import PyHandleClient
from pyhandle.handleexceptions import HandleAlreadyExistsException, HandleNotFoundException

from idnode.config import Config, Endpoint
from idnode.node import Node
from idnode.servers import build_http_app, tls_context
from idnode.site import node_site
from registry.services import Actor, Registry
from registry.tokens import TokenIssuer
from resolver.resolution import Resolver
from tests.conftest import ApiClient
from tests.factories import ADMIN_SK, hosted_enterprise, self_signed

T = TypeVar("T")
USER = "300:0.NA/88.100"


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """pyhandle is synchronous: run it beside the server's event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore")  # pyhandle warns about unverified HTTPS and more


async def test_pyhandle_read_write_search(api: ApiClient, registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    client = await blocking(
        PyHandleClient("rest").instantiate_with_username_and_password, api.base, USER, ADMIN_SK
    )

    handle = await blocking(
        client.register_handle, f"{prefix}/ph-1", "https://example.org/1", checksum="c0ffee"
    )
    assert handle == f"{prefix}/ph-1"
    with pytest.raises(HandleAlreadyExistsException):
        await blocking(client.register_handle, f"{prefix}/ph-1", "https://example.org/x")
    record = await blocking(client.retrieve_handle_record_json, f"{prefix}/ph-1")
    assert record["responseCode"] == 1 and record["handle"] == f"{prefix}/ph-1"
    types = {v["type"]: v for v in record["values"]}
    assert types["HS_ADMIN"]["data"]["value"]["handle"] == f"0.NA/{prefix}"
    assert await blocking(client.get_value_from_handle, f"{prefix}/ph-1", "URL") == (
        "https://example.org/1"
    )
    assert await blocking(client.get_value_from_handle, f"{prefix}/ph-1", "CHECKSUM") == "c0ffee"

    assert (
        await blocking(
            client.register_handle_kv, f"{prefix}/ph-2", "https://example.org/2", COLOR="blue"
        )
        == f"{prefix}/ph-2"
    )
    await blocking(
        client.modify_handle_value, f"{prefix}/ph-2", URL="https://example.org/2b", SIZE="L"
    )
    flat = await blocking(client.retrieve_handle_record, f"{prefix}/ph-2")
    assert (flat["URL"], flat["COLOR"], flat["SIZE"]) == ("https://example.org/2b", "blue", "L")
    await blocking(client.delete_handle_value, f"{prefix}/ph-2", "SIZE")
    assert "SIZE" not in await blocking(client.retrieve_handle_record, f"{prefix}/ph-2")

    minted = await blocking(client.generate_and_register_handle, prefix, "https://example.org/g")
    assert minted.startswith(f"{prefix}/") and len(minted) > len(prefix) + 30
    assert await blocking(client.get_value_from_handle, minted, "URL") == "https://example.org/g"

    await blocking(client.delete_handle, f"{prefix}/ph-2")
    assert await blocking(client.retrieve_handle_record_json, f"{prefix}/ph-2") is None
    with pytest.raises(HandleNotFoundException):
        await blocking(client.delete_handle, f"{prefix}/ph-2")

    searcher = await blocking(
        PyHandleClient("rest").instantiate_for_read_and_search, api.base, USER, ADMIN_SK
    )
    assert await blocking(searcher.search_handle, URL="https://example.org/1") == [f"{prefix}/ph-1"]
    found = await blocking(searcher.search_handle, URL="https://example.org/*")
    assert sorted(found) == sorted([f"{prefix}/ph-1", minted])
    assert await blocking(searcher.search_handle, URL="*/1", CHECKSUM="c0ffee") == [
        f"{prefix}/ph-1"
    ]
    assert await blocking(searcher.search_handle, URL="https://nowhere/*") == []


@pytest.fixture
async def https_base(
    registry: Registry, node_key: Any, database_url: str, tmp_path: Path
) -> AsyncIterator[str]:
    cert, key, _serial = self_signed(tmp_path)
    config = Config(database_url=database_url, tls_cert=str(cert), tls_key=str(key))
    context = tls_context(config)
    assert context is not None
    node = Node(config, registry.engine, registry, TokenIssuer(node_key), Resolver(registry))
    registry.services.site = node_site(config, Endpoint("127.0.0.1", 8443), tls=True)
    runner = web.AppRunner(build_http_app(node), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    await web.SockSite(runner, sock, ssl_context=context).start()
    yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    await runner.cleanup()


async def test_pyhandle_over_https(https_base: str, registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    client = await blocking(
        PyHandleClient("rest").instantiate_with_username_and_password,
        https_base,
        USER,
        ADMIN_SK,
        HTTPS_verify=False,
    )
    assert await blocking(client.register_handle, f"{prefix}/tls", "https://example.org/t") == (
        f"{prefix}/tls"
    )
    assert await blocking(client.get_value_from_handle, f"{prefix}/tls", "URL") == (
        "https://example.org/t"
    )
    import requests

    site = await blocking(requests.get, f"{https_base}/api/site", verify=False, timeout=10)
    assert site.json()["site"]["servers"][0]["interfaces"][0]["protocol"] == "HTTPS"
    # TLS 1.1 and older are refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    host, port = https_base.removeprefix("https://").split(":")
    with pytest.raises(ssl.SSLError), socket.create_connection((host, int(port)), 5) as raw:
        await blocking(old.wrap_socket(raw, do_handshake_on_connect=False).do_handshake)
