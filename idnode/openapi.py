"""The OpenAPI 3.1 document of every HTTP API the node serves, at ``GET /api/openapi.json``.

One document for the whole HTTP surface, assembled here from the parts that
live beside what they describe — the SNMS-compatible admin API
(``registry.api.openapi``: ``/identity``, ``/identityv2``, ``/snms/api``), HTTP
resolution (``resolver.http.openapi``: the HANDLE.NET-compatible REST API under
``/api/``, reverse lookup at ``/hrls``, the redirect proxy at ``/<handle>``) —
and what the node itself adds: health, metrics, the per-client limits, this
document. It says what the handlers accept and answer (bodies, parameters,
every status a well-behaved request can get); ``tests/test_openapi.py`` checks
it against the routes the application registers, and the fuzzing tests check
the node's answers against it.
"""

from __future__ import annotations

import functools
import json
from importlib import metadata
from typing import Any

from aiohttp import web

import registry.api.openapi as snms_doc
import resolver.http.openapi as http_doc
from registry.api.openapi.schema import Schema, json_object, json_response, ref
from resolver.http.limits import UNLIMITED
from resolver.http.openapi import OPENAPI_PATH

__all__ = ["OPENAPI_PATH", "add_route", "document"]

_METHODS = ("get", "put", "post", "delete", "patch")


def _health_paths() -> dict[str, Schema]:
    health = json_object(
        {"status": {"type": "string"}, "database": {"type": "string"}}, ("status", "database")
    )
    ready = json_object(
        {
            "status": {"type": "string"},
            "database": {"type": "string"},
            "schema": {"type": "string"},
        },
        ("status",),
    )
    return {
        "/healthz": {
            "get": {
                "tags": ["health"],
                "summary": "Liveness: the process answers and reaches its database",
                "responses": {
                    "200": json_response(health, "Healthy"),
                    "503": json_response(health, "The database is unreachable"),
                },
            }
        },
        "/readyz": {
            "get": {
                "tags": ["health"],
                "summary": "Readiness: the database is reachable and its schema current",
                "responses": {
                    "200": json_response(ready, "Ready"),
                    "503": json_response(ready, "Not ready (database or schema)"),
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["health"],
                "summary": "Prometheus exposition, every process of the node added up",
                "responses": {
                    "200": {
                        "description": "Metrics in the text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def _meta_paths() -> dict[str, Schema]:
    return {
        OPENAPI_PATH: {
            "get": {
                "tags": ["meta"],
                "summary": "This document",
                "responses": {"200": json_response({"type": "object"}, "The OpenAPI document")},
            }
        }
    }


def _with_limits(paths: dict[str, Schema]) -> dict[str, Schema]:
    """Per-client limits (resolver.http.limits) answer 429 everywhere but health."""
    refused = http_doc.rate_limited()
    throttled = {  # the SNMS API says it in its envelope: a login locked out, a quota
        **refused,
        "description": f"{refused['description']}; too many failed logins; over a quota",
        "content": {"application/json": {"schema": {"anyOf": [ref("Limited"), ref("Failure")]}}},
    }
    for path, item in paths.items():
        if path in UNLIMITED:
            continue
        for method in _METHODS:
            if method in item:
                in_snms = snms_doc.SNMS_TAG in item[method].get("tags", ())
                item[method]["responses"].setdefault("429", throttled if in_snms else refused)
    return paths


def _version() -> str:
    try:
        return metadata.version("idnode")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _build() -> dict[str, Any]:
    paths = {**snms_doc.paths(), **http_doc.paths(), **_meta_paths(), **_health_paths()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "idnode HTTP APIs",
            "version": _version(),
            "description": (
                "A secondary node of the Industrial Internet identifier resolution system. "
                "SNMS admin API (envelope {message, status, data}, always HTTP 200 unless "
                "the transport fails), the HANDLE.NET 9 REST API (JSON with responseCode, "
                "JSONP with callback), EUDAT HRLS reverse lookup, the redirect proxy, health "
                "and metrics. Every GET also answers HEAD; under /api/ and /hrls/ OPTIONS "
                "answers CORS preflights. Log in with POST /identity/token, then send "
                "'Authorization: Bearer <token>'. The REST API also takes HTTP Basic: the "
                "percent-encoded 'index%3Ahandle' of a Handle identity and its HS_SECKEY, "
                "or an access key and its secret — over HTTPS, or plain HTTP where allowed."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            *snms_doc.TAGS,
            *http_doc.TAGS,
            {"name": "health", "description": "Liveness, readiness, metrics"},
            {"name": "meta", "description": "This document"},
        ],
        "paths": _with_limits(paths),
        "components": {
            "schemas": {**snms_doc.schemas(), **http_doc.schemas()},
            "securitySchemes": {**snms_doc.SECURITY_SCHEMES, **http_doc.SECURITY_SCHEMES},
        },
    }


@functools.cache
def _document_bytes() -> bytes:
    return json.dumps(_build(), ensure_ascii=False, indent=1).encode("utf-8")


def document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    parsed: dict[str, Any] = json.loads(_document_bytes())
    return parsed


async def _serve(request: web.Request) -> web.Response:
    return web.Response(body=_document_bytes(), content_type="application/json", charset="utf-8")


def add_route(app: web.Application) -> None:
    """Serve the document; before HTTP resolution's routes, whose catch-all under
    ``/api/`` would otherwise answer for it."""
    app.router.add_get(OPENAPI_PATH, _serve)
