"""The OpenAPI document: valid, complete (every route the application registers is
in it and nothing else), served at /api/openapi.json — and the node's answers
conform to it, checked by schemathesis against a real node on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shutil
import socket
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from idnode.config import Config, Endpoint
from idnode.node import Node
from idnode.openapi import OPENAPI_PATH, document
from idnode.servers import build_http_app
from idnode.site import node_site
from registry.db import create_engine
from registry.grammar import Grammar
from registry.secrets import NodeKey
from registry.services import Registry, Services
from registry.tokens import TokenIssuer
from resolver.resolution import Resolver
from tests.conftest import ApiClient
from tests.factories import ADMIN_AK, ADMIN_SK, NODE_PREFIX, OID_ARC, ErrorLog

ANY_METHOD = ("GET", "PUT", "POST", "DELETE", "PATCH")
"""What a ``*`` route stands for in the document."""
START_SECONDS = 30.0


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route; HEAD routes are GET's twins."""
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD":
            continue
        methods = ANY_METHOD if route.method == "*" else (route.method,)
        found.update((method, path) for method in methods)
    return found


def operations_of(doc: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in methods
    }


def test_document_is_valid_openapi() -> None:
    doc = document()
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"].startswith("3.1")
    # Every operation says what its success looks like, and every $ref resolves.
    schemas = doc["components"]["schemas"]
    text = repr(doc)
    for name in schemas:
        assert f"#/components/schemas/{name}" in text or name in ("Unavailable",), name
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"], (method, path)
            assert operation.get("summary"), (method, path)


def test_document_is_not_valid_when_broken() -> None:
    """The validator does catch a broken document (so the test above can fail)."""
    doc = document()
    doc["paths"]["/healthz"]["get"]["responses"] = "nothing"
    with pytest.raises(Exception, match="nothing"):
        validate(doc)


async def test_every_route_is_documented_and_served(api: ApiClient) -> None:
    assert api.app is not None
    registered = routes_of(api.app)
    doc = document()
    documented = operations_of(doc)
    assert registered - documented == set(), "routes missing from the document"
    assert documented - registered == set(), "documented operations with no route"
    status, served = await api.call("GET", OPENAPI_PATH, token="")
    assert status == 200 and served == doc


# --- schemathesis against a running node --------------------------------------------


@dataclass
class RunningNode:
    base: str
    token: str
    errors: ErrorLog
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


async def _serve(database_url: str, started: asyncio.Future[str], stop: asyncio.Event) -> None:
    """The node's HTTP application, as ``idnode serve`` builds it, on a loopback port."""
    node_key = NodeKey.generate()
    engine = create_engine(database_url)
    grammar = Grammar(oid_arc=OID_ARC, node_prefix=NODE_PREFIX)
    registry = Registry(
        Services(engine, node_prefix=NODE_PREFIX, node_key=node_key, grammar=grammar)
    )
    runner: web.AppRunner | None = None
    try:
        await registry.ensure_node()
        await registry.accounts.bootstrap_admin(ADMIN_AK, ADMIN_SK)
        config = Config(database_url=database_url, allow_plain_http_auth=True)
        node = Node(config, engine, registry, TokenIssuer(node_key), Resolver(registry))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        registry.services.site = node_site(config, Endpoint("127.0.0.1", port), tls=False)
        runner = web.AppRunner(build_http_app(node), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        started.set_result(f"http://127.0.0.1:{port}")
        await stop.wait()
    except BaseException as exc:
        if not started.done():
            started.set_exception(exc)
        raise
    finally:
        if runner is not None:
            await runner.cleanup()
        await registry.accounts.drain()
        await engine.dispose()


@contextlib.contextmanager
def node_in_thread(database_url: str) -> Iterator[tuple[str, ErrorLog]]:
    """A node on its own event loop in a thread (schemathesis calls it synchronously),
    with every error it logs collected."""
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started: asyncio.Future[str] = loop.create_future()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(_serve(database_url, started, stop),), daemon=True
    )
    thread.start()
    try:
        base = asyncio.run_coroutine_threadsafe(_wait(started), loop).result(START_SECONDS)
        yield base, errors
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(START_SECONDS)
        loop.close()
        logging.getLogger().removeHandler(errors)


async def _wait(started: asyncio.Future[str]) -> str:
    return await started


@pytest.fixture(scope="module")
def running_node(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningNode]:
    path = tmp_path_factory.mktemp("openapi") / "idnode.db"
    shutil.copy(sqlite_template, path)
    with node_in_thread(f"sqlite+aiosqlite:///{path}") as (base, errors):
        login = {"username": ADMIN_AK, "password": ADMIN_SK}
        answer = requests.post(f"{base}/identity/token", json=login, timeout=10).json()
        token = str(answer["data"]["token"])
        node = RunningNode(base, token, errors)
        basic = base64.b64encode(f"300%3A0.NA/{NODE_PREFIX}:{ADMIN_SK}".encode()).decode()
        node.headers = {
            "bearer": {"Authorization": f"Bearer {token}"},
            "basic": {"Authorization": f"Basic {basic}"},
            "anonymous": {},
        }
        yield node
        assert errors.records == [], errors.text()


def _schema(mode: GenerationMode) -> Any:
    loaded = schemathesis.openapi.from_dict(document())
    loaded.config.generation.update(
        modes=[mode], max_examples=EXAMPLES, database="none", with_security_parameters=False
    )
    return loaded


EXAMPLES = 5
positive = _schema(GenerationMode.POSITIVE)
# Invalid path parameters route elsewhere (a handle that is no handle is no longer
# /api/handles/{handle}), so negative cases keep to operations without them.
negative = _schema(GenerationMode.NEGATIVE).exclude(path_regex=r"\{")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
_WHO = ("bearer", "basic", "anonymous")


def _call_and_check(case: Any, node: RunningNode) -> None:
    """Send the case as a caller picked by the case (bearer, Basic or nobody) and
    check the answer: never a 5xx, as documented, nothing logged as an error."""
    who = _WHO[zlib.crc32(f"{case.method} {case.path} {case.body!r}".encode()) % len(_WHO)]
    headers = {**(case.headers or {}), **node.headers[who]}
    before = len(node.errors.records)
    response = case.call(base_url=node.base, headers=headers, timeout=15)
    case.validate_response(response, checks=CHECKS)
    assert node.errors.records[before:] == [], node.errors.text()


_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@positive.parametrize()  # type: ignore[untyped-decorator]
@_SETTINGS
def test_valid_requests_conform(case: Any, running_node: RunningNode) -> None:
    _call_and_check(case, running_node)


@negative.parametrize()  # type: ignore[untyped-decorator]
@_SETTINGS
def test_invalid_requests_conform(case: Any, running_node: RunningNode) -> None:
    _call_and_check(case, running_node)
