"""The OpenAPI 3.1 document of every HTTP API the node serves, at ``GET /api/openapi.json``.

One document for the whole HTTP surface — the SNMS-compatible admin API
(``/identity``, ``/identityv2``, ``/snms/api``), the HANDLE.NET-compatible REST
API (``/api/...``), reverse lookup (``/hrls``), the redirect proxy (``/<handle>``)
and health and metrics — built as plain data. It describes what the handlers
accept and answer (bodies, parameters, every status a well-behaved request can
get); ``tests/test_openapi.py`` checks it against the routes the application
registers, and the fuzzing tests check the node's answers against it.
"""

from __future__ import annotations

import functools
import json
from importlib import metadata
from typing import Any

from aiohttp import web

__all__ = ["OPENAPI_PATH", "document", "serve"]

OPENAPI_PATH = "/api/openapi.json"
MAX_BATCH = 2000
MAX_HANDLE_CHARS = 255
MAX_VALUE_CHARS = 255
INT32_MAX = 2**31 - 1

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(max_length: int, **extra: Any) -> Schema:
    return {"type": "string", "maxLength": max_length, **extra}


def _integer(minimum: int = -(2**31), maximum: int = INT32_MAX) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _query(name: str, schema: Schema, description: str = "", *, required: bool = False) -> Schema:
    parameter: Schema = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _path(name: str, schema: Schema, description: str, example: Any = None) -> Schema:
    parameter = {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }
    if example is not None:
        parameter["example"] = example
    return parameter


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# --- the SNMS admin API -----------------------------------------------------------

SNMS_TAG = "snms"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _envelope_of(data: Schema) -> Schema:
    """Status 1 with ``data``, or a failure (-1 not logged in, -2 refused, -3 no
    permission) whose ``data`` is null — always HTTP 200, as SNMS answers."""
    return {
        "oneOf": [
            _object(
                {"message": {"type": "string"}, "status": {"const": 1}, "data": data},
                ("message", "status", "data"),
            ),
            _ref("Failure"),
        ]
    }


def _snms_responses(data: Schema, *, body: bool) -> dict[str, Schema]:
    responses = {
        "200": _json(_envelope_of(data), "The SNMS envelope: success, or the reason it failed"),
        "503": _json(_ref("Unavailable"), "The database is unavailable (status -4)"),
    }
    if body:
        responses["413"] = _json(_ref("Failure"), "The body is larger than 32 MiB")
    return responses


def _snms(
    summary: str,
    data: Schema,
    *,
    body: Schema | None = None,
    body_required: bool = True,
    parameters: list[Schema] | None = None,
    public: bool = False,
) -> Schema:
    operation: Schema = {
        "tags": [SNMS_TAG],
        "summary": summary,
        "security": [] if public else BEARER,
        "responses": _snms_responses(data, body=body is not None),
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    return operation


_SUCCESS: Schema = {"const": True}
_PAGE_PARAMETERS = [
    _query("currentPage", _integer(1), "1-based page number (default 1)"),
    _query("pageSize", _integer(1, 1000), "items a page (default 10)"),
    _query("startDate", _text(32), "created at or after (yyyy-MM-dd[ HH:mm:ss])"),
    _query("endDate", _text(32), "created at or before (yyyy-MM-dd[ HH:mm:ss])"),
]


def _spring_page(item: Schema) -> Schema:
    return _object(
        {
            "first": {"type": "boolean"},
            "last": {"type": "boolean"},
            "totalPages": {"type": "integer"},
            "totalElements": {"type": "integer"},
            "number": {"type": "integer"},
            "size": {"type": "integer"},
            "sort": {"type": "null"},
            "numberOfElements": {"type": "integer"},
            "content": {"type": "array", "items": item},
        },
        ("totalPages", "totalElements", "number", "size", "numberOfElements", "content"),
    )


def _template_query(*, version_required: bool) -> list[Schema]:
    return [
        _query("prefix", _text(64, minLength=1), "the enterprise prefix", required=True),
        _query(
            "version", _text(128, minLength=1), "the template version", required=version_required
        ),
    ]


def _snms_paths() -> dict[str, Schema]:
    template_item = _ref("Template")
    paths: dict[str, Schema] = {
        "/identity/token": {
            "post": _snms(
                "Log in with a user name or access key and the password or secret key",
                _object({"token": {"type": "string"}}, ("token",)),
                body=_ref("Login"),
                public=True,
            )
        },
        "/identity/token/v1": {
            "post": _snms(
                'Log in with sha256(sha256(password) + "yyyy-MM-dd") (node-local date)',
                _object({"token": {"type": "string"}}, ("token",)),
                body=_ref("Login"),
                public=True,
            )
        },
        "/identity/registry": {
            "post": _snms("Create a user (node administrators)", _SUCCESS, body=_ref("NewUser"))
        },
        "/identity/access-key": {
            "post": _snms(
                "Issue an AK/SK pair for yourself (administrators: for anyone) — idnode extension",
                _object(
                    {"accessKey": {"type": "string"}, "secretKey": {"type": "string"}},
                    ("accessKey", "secretKey"),
                ),
                body=_object({"username": _text(50)}),
            )
        },
        "/identityv2/data/detail": {
            "get": _snms(
                "Read an identifier",
                _ref("IdentifierDetail"),
                parameters=[_query("handle", _text(MAX_HANDLE_CHARS, minLength=1), required=True)],
            )
        },
        "/identityv2/data": {
            "post": _snms(
                "Register an identifier (retry-safe)", _SUCCESS, body=_ref("IdentifierRecord")
            ),
            "put": _snms("Replace an identifier's values", _SUCCESS, body=_ref("IdentifierRecord")),
            "delete": _snms(
                "Delete an identifier, named in the query or the body",
                _SUCCESS,
                parameters=[_query("handle", _text(MAX_HANDLE_CHARS, minLength=1))],
                body=_object({"handle": _text(MAX_HANDLE_CHARS, minLength=1)}, ("handle",)),
                body_required=False,
            ),
        },
        "/identityv2/data/batchCreate": {
            "post": _snms(
                "Register up to 2000 identifiers, each atomically, with per-item results",
                {"type": "array", "items": _ref("BatchItemResult")},
                body=_ref("RecordBatch"),
            )
        },
        "/identityv2/data/batchUpdate": {
            "put": _snms(
                "Replace up to 2000 identifiers, each atomically, with per-item results",
                {"type": "array", "items": _ref("BatchItemResult")},
                body=_ref("RecordBatch"),
            )
        },
        "/identityv2/data/batchDelete": {
            "delete": _snms(
                "Delete up to 2000 identifiers, with per-item results",
                {"type": "array", "items": _ref("BatchDeleteResult")},
                body=_ref("HandleBatch"),
            )
        },
        "/snms/api/prefix/query": {
            "get": _snms(
                "An enterprise prefix and its enterprise",
                _ref("PrefixDetail"),
                parameters=[
                    _query("prefix", _text(64), "the prefix (or entPrefix)"),
                    _query("entPrefix", _text(64), "the prefix (or prefix)"),
                ],
            )
        },
        "/snms/api/prefix/page": {
            "get": _snms(
                "Page through enterprise prefixes",
                _spring_page(_ref("PrefixSummary")),
                parameters=[
                    _query("entName", _text(255), "enterprise name contains"),
                    _query("entPrefix", _text(64), "prefix starts with"),
                    *_PAGE_PARAMETERS,
                ],
            )
        },
        "/snms/api/ent/config": {
            "post": _snms(
                "Configure a prefix: hosted here (proxyServerId) or served by the enterprise "
                "(HS_SITE route)",
                _SUCCESS,
                body=_ref("PrefixConfig"),
            )
        },
        "/snms/api/v3/ent/apply": {
            "post": _snms(
                "File an enterprise with a new user and allocate its prefix (administrators)",
                _SUCCESS,
                body=_ref("EnterpriseApplication"),
            )
        },
        "/snms/api/v3/ent/upgrade-apply": {
            "post": _snms(
                "File an enterprise for an existing user (administrators)",
                _SUCCESS,
                body=_ref("EnterpriseUpgrade"),
            )
        },
        "/snms/api/v3/ent/page": {
            "get": _snms(
                "Page through enterprises",
                _spring_page(_ref("EnterpriseSummary")),
                parameters=[
                    _query("orgName", _text(255), "enterprise name contains"),
                    *_PAGE_PARAMETERS,
                ],
            )
        },
        "/snms/api/v3/ent/detail": {
            "get": _snms(
                "An enterprise's filing and prefixes",
                _ref("EnterpriseDetail"),
                parameters=[_query("id", _integer(1), "the enterprise id")],
            )
        },
        "/snms/api/file/upload": {
            "post": {
                **_snms(
                    "Upload an attachment for a filing (image ≤ 1 MB or PDF ≤ 5 MB)",
                    _object(
                        {"id": {"type": "integer"}, "path": {"type": "string"}}, ("id", "path")
                    ),
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _object(
                                {"file": {"type": "string", "format": "binary"}}, ("file",)
                            )
                        }
                    },
                },
            }
        },
        "/snms/api/file/{id}": {
            "get": _download(),
        },
        "/snms/api/data-grant": {
            "get": _snms(
                "Data grants: on a prefix, received by your enterprise, or all of yours",
                {"type": "array", "items": _ref("Grant")},
                parameters=[
                    _query("prefix", _text(64), "the grants on this prefix"),
                    _query("received", _text(8), "true: the grants given to your enterprise"),
                ],
            ),
            "post": _snms(
                "Let another enterprise read a prefix's restricted values (again: items replaced)",
                _ref("Grant"),
                body=_ref("GrantSpec"),
            ),
            "delete": _snms(
                "Revoke a grant, by id (query or body) or by what it grants",
                _object({"id": {"type": "integer"}}, ("id",)),
                parameters=[_query("id", _integer(1), "the grant")],
                body={
                    "anyOf": [
                        _object({"id": _integer(1)}, ("id",)),
                        _ref("GrantSpec"),
                    ]
                },
                body_required=False,
            ),
        },
    }
    for version in ("v5", "v3"):
        paths[f"/snms/api/{version}/template"] = {
            "get": _snms(
                "With version: that template; without: every template of the prefix",
                {"anyOf": [template_item, {"type": "array", "items": template_item}]},
                parameters=_template_query(version_required=False),
            ),
            "post": _snms("Create a metadata template", _SUCCESS, body=_ref("TemplateSpec")),
            "put": _snms("Replace a metadata template", _SUCCESS, body=_ref("TemplateSpec")),
            "delete": _snms(
                "Delete a template version, named in the query or the body",
                _SUCCESS,
                parameters=[
                    _query("prefix", _text(64), "the enterprise prefix"),
                    _query("version", _text(128), "the template version"),
                ],
                body=_object(
                    {"prefix": _text(64, minLength=1), "version": _text(128, minLength=1)},
                    ("prefix", "version"),
                ),
                body_required=False,
            ),
        }
    return paths


def _download() -> Schema:
    operation = _snms(
        "Download an attachment (idnode extension, for reviewing a filing)",
        {"type": "null"},
        parameters=[_path("id", _integer(1), "the attachment id")],
    )
    operation["responses"]["200"]["content"].update(
        {
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("image/png", "image/jpeg", "image/gif", "image/bmp", "application/pdf")
        }
    )
    operation["responses"]["200"]["description"] = (
        "The file; or, as JSON, the envelope saying why not"
    )
    return operation


# --- the Handle REST API -----------------------------------------------------------

REST_TAG = "handle-rest"
REST_SECURITY: list[dict[str, list[str]]] = [{}, {"basicAuth": []}, {"bearerAuth": []}]
_JSONP = {"schema": {"type": "string"}}


def _rest_answer(schema: Schema, description: str) -> Schema:
    """JSON, or JSONP (``callback``) as JavaScript."""
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}, "application/javascript": _JSONP},
    }


def _rest_errors(*codes: int) -> dict[str, Schema]:
    meaning = {
        300: "Referral: the prefix is served by another node (HS_SITE values)",
        400: "Malformed request, invalid handle or value, or a prefix not served here",
        401: "Authentication needed or failed (over HTTPS or with plain-HTTP auth allowed)",
        403: "Not permitted; over plain HTTP a needed authentication is a 403",
        404: "Handle not found",
        409: "Handle or value already exists",
        413: "Body larger than 32 MiB",
        501: "Not supported here",
        503: "Storage unavailable or too busy",
        504: "The node serving this prefix did not answer (recursion)",
    }
    responses: dict[str, Schema] = {}
    for code in codes:
        if code == 300:
            responses["300"] = _rest_answer(_ref("RestReferral"), meaning[code])
        elif code == 413:
            responses["413"] = {
                "description": meaning[code],
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        else:
            responses[str(code)] = _rest_answer(_ref("RestError"), meaning[code])
    return responses


def _rest(summary: str, ok: dict[str, Schema], *errors: int, **extra: Any) -> Schema:
    return {
        "tags": [REST_TAG],
        "summary": summary,
        "security": REST_SECURITY,
        "responses": {**ok, **_rest_errors(*errors)},
        **extra,
    }


_FORMAT = [
    _query("pretty", _text(16), "indent the JSON (present, true or yes)"),
    _query(
        "callback",
        _text(64, pattern="^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$"),
        "JSONP: wrap the answer in this function call (ignored with credentials)",
    ),
]
_RESOLUTION_PARAMETERS = [
    _query(
        "index",
        {"type": "array", "items": _integer(0), "maxItems": 16},
        "only values at these indexes (repeat the parameter)",
    ),
    _query(
        "type", {"type": "array", "items": _text(128), "maxItems": 16}, "only values of these types"
    ),
    _query("auth", _text(16), "read from the record, not the cache (any value)"),
    _query("publicOnly", _text(16), "true: public values only, even with credentials"),
    *_FORMAT,
]
_HANDLE_PARAMETER = _path(
    "handle",
    _text(512, minLength=1, pattern="^[0-9][^\\n]*$"),
    "The handle, percent-encoded (``88.100.1%2Fabc``; ``/`` may also stay as it is)",
    "0.NA/88.100",
)


def _resolution_responses() -> dict[str, Schema]:
    return {
        "200": _rest_answer(_ref("RestRecord"), "The values (RC 1), or none matched (RC 200)"),
    }


def _rest_paths() -> dict[str, Schema]:
    handle_ops: Schema = {
        "parameters": [_HANDLE_PARAMETER],
        "get": _rest(
            "Resolve a handle",
            _resolution_responses(),
            300,
            400,
            401,
            403,
            404,
            503,
            504,
            parameters=_RESOLUTION_PARAMETERS,
        ),
        "post": _rest(
            "Resolve a handle (as GET; HANDLE.NET accepts POST too)",
            _resolution_responses(),
            300,
            400,
            401,
            403,
            404,
            503,
            504,
            parameters=_RESOLUTION_PARAMETERS,
        ),
        "put": _rest(
            "Create a handle, or replace, add or modify its values",
            {
                "200": _rest_answer(_ref("RestDone"), "Done, something was overwritten"),
                "201": _rest_answer(_ref("RestDone"), "Created"),
            },
            400,
            401,
            403,
            404,
            409,
            413,
            503,
            parameters=[
                _query(
                    "index",
                    {
                        "type": "array",
                        "items": {"anyOf": [_integer(0), {"const": "various"}]},
                        "maxItems": 16,
                    },
                    "set only these values (must equal the body's indexes), or 'various'",
                ),
                _query("overwrite", _text(16), "false: never overwrite (default true)"),
                _query("mintNewSuffix", _text(16), "true: append a new unique suffix"),
                *_FORMAT,
            ],
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("RestValuesBody")}},
            },
        ),
        "delete": _rest(
            "Delete a handle, or some of its values (index)",
            {"200": _rest_answer(_ref("RestDone"), "Deleted")},
            400,
            401,
            403,
            404,
            503,
            parameters=[
                _query(
                    "index",
                    {"type": "array", "items": _integer(0), "maxItems": 16},
                    "only these values (repeat the parameter)",
                ),
                *_FORMAT,
            ],
        ),
    }
    return {
        "/api/handles": {
            "get": _rest(
                "List the handles under a prefix (authenticated)",
                {"200": _rest_answer(_ref("RestListing"), "The names")},
                400,
                401,
                403,
                404,
                503,
                parameters=[
                    _query("prefix", _text(255, minLength=1), "the prefix", required=True),
                    _query("page", {"type": "integer"}, "page number from 0; negative: all"),
                    _query("pageSize", {"type": "integer", "maximum": 10_000}, "names a page"),
                    *_FORMAT,
                ],
            )
        },
        "/api/handles/{handle}": handle_ops,
        "/api/oid/{oid}": {
            "get": _rest(
                "Resolve an identifier named by an OID (the answer of /api/handles/<oid>)",
                _resolution_responses(),
                300,
                400,
                401,
                403,
                404,
                503,
                504,
                parameters=[
                    _path(
                        "oid",
                        _text(512, minLength=1, pattern="^[0-9][^\\n]*$"),
                        "dotted numeric arcs (1.2.156.86.1.3.7)",
                        "1.2.156.86.1",
                    ),
                    *_RESOLUTION_PARAMETERS,
                ],
            )
        },
        "/api/prefixes": {
            "get": _rest(
                "Prefixes homed here (authenticated, as HANDLE.NET)",
                {
                    "200": _rest_answer(
                        _object(
                            {
                                "responseCode": {"const": 1},
                                "prefixes": {"type": "array", "items": {"type": "string"}},
                            },
                            ("responseCode", "prefixes"),
                        ),
                        "The prefixes, as 0.NA/<prefix>",
                    )
                },
                400,
                401,
                403,
                503,
                parameters=_FORMAT,
            )
        },
        "/api/site": {
            "get": _rest(
                "This node's HS_SITE",
                {
                    "200": _rest_answer(
                        _object(
                            {"responseCode": {"const": 1}, "site": _ref("Site")},
                            ("responseCode", "site"),
                        ),
                        "The site information",
                    )
                },
                400,
                401,
                403,
                501,
                parameters=_FORMAT,
            )
        },
        "/api/{rest}": {
            "parameters": [
                _path(
                    "rest",
                    _text(
                        255,
                        minLength=1,
                        **{"not": {"enum": ["handles", "prefixes", "site", "openapi.json"]}},
                    ),
                    "anything that is no endpoint",
                )
            ],
            **{
                method: {
                    "tags": [REST_TAG],
                    "summary": "Any other path or method under /api/: 405, as HANDLE.NET",
                    "responses": _rest_405(),
                }
                for method in ("get", "put", "post", "delete", "patch")
            },
        },
        OPENAPI_PATH: {
            "get": {
                "tags": ["meta"],
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI document"),
                },
            }
        },
    }


def _rest_405() -> dict[str, Schema]:
    return {"405": _rest_answer(_ref("RestError"), "Unknown HTTP API endpoint")}


# --- reverse lookup, the proxy, health -----------------------------------------------


def _hrls() -> Schema:
    return _rest(
        "Handles having values of each given type equal to the text ('*' wildcards); "
        "conditions are AND-ed",
        {
            "200": _rest_answer(
                {
                    "anyOf": [
                        {"type": "array", "items": {"type": "string"}},
                        {"type": "array", "items": _ref("HrlsRecord")},
                    ]
                },
                "Names, or whole records with retrieverecords=true",
            )
        },
        400,
        401,
        403,
        503,
        parameters=[
            _query("limit", {"type": "integer", "minimum": 0}, "at most this many (default 1000)"),
            _query("page", {"type": "integer", "minimum": 0}, "page from 0"),
            _query("retrieverecords", _text(16), "true: whole records"),
            *_FORMAT,
            {
                "name": "conditions",
                "in": "query",
                "style": "form",
                "explode": True,
                "description": "TYPE=text conditions (URL=https://*, CHECKSUM=abc)",
                "schema": {
                    "type": "object",
                    "additionalProperties": _text(255),
                    "maxProperties": 8,
                },
            },
        ],
    )


def _html(description: str) -> Schema:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


_PAGE_STATUSES = {
    "400": _html("Not a valid identifier"),
    "401": _html("Credentials were sent and do not check out"),
    "404": _html("Not found, or not served here"),
    "503": _html("Storage unavailable or too busy"),
    "504": _html("The node serving this prefix did not answer (recursion)"),
}


def _proxy_paths() -> dict[str, Schema]:
    lookup = {"200": _html("The lookup page for the identifier"), **_PAGE_STATUSES}
    return {
        "/": {
            "get": {
                "tags": ["proxy"],
                "summary": "The lookup page: a search box; with handle=, that identifier's page",
                "parameters": [_query("handle", _text(255), "the identifier to show")],
                "responses": lookup,
            }
        },
        "/{handle}": {
            "get": {
                "tags": ["proxy"],
                "summary": "Redirect to the record's first URL value (noredirect: its page)",
                "parameters": [
                    _path(
                        "handle",
                        _text(512, minLength=1, pattern="^[0-9]"),
                        "the identifier (every name of the node starts with a digit)",
                        "88.100",
                    ),
                    _query("noredirect", _text(16), "show the page, never redirect"),
                ],
                "responses": {
                    **lookup,
                    "302": {
                        "description": "To the record's URL",
                        "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
                    },
                },
            }
        },
        "/hrls/ping": {
            "get": {
                "tags": ["hrls"],
                "summary": "Liveness of the reverse-lookup service",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"text/plain": {"schema": {"const": "OK"}}},
                    }
                },
            }
        },
        "/hrls/handles": {"get": _hrls()},
        "/hrls/handles/": {"get": _hrls()},
        "/hrls/handles/{prefix}": {
            "parameters": [
                _path("prefix", _text(255, minLength=1, pattern="^[^\\n]+$"), "only under it")
            ],
            "get": _hrls(),
        },
    }


def _health_paths() -> dict[str, Schema]:
    health = _object(
        {"status": {"type": "string"}, "database": {"type": "string"}}, ("status", "database")
    )
    ready = _object(
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
                    "200": _json(health, "Healthy"),
                    "503": _json(health, "The database is unreachable"),
                },
            }
        },
        "/readyz": {
            "get": {
                "tags": ["health"],
                "summary": "Readiness: the database is reachable and its schema current",
                "responses": {
                    "200": _json(ready, "Ready"),
                    "503": _json(ready, "Not ready (database or schema)"),
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


# --- components ----------------------------------------------------------------------


def _schemas() -> dict[str, Schema]:
    text_or_null = _nullable({"type": "string"})
    value_ref = _object(
        {"handle": {"type": "string"}, "index": {"type": "integer"}}, ("handle", "index")
    )
    return {
        "Failure": _object(
            {
                "message": {"type": "string"},
                "status": {"enum": [-1, -2, -3, -4]},
                "data": {"type": "null"},
            },
            ("message", "status", "data"),
        ),
        "Unavailable": _object(
            {"message": {"type": "string"}, "status": {"const": -4}, "data": {"type": "null"}},
            ("message", "status", "data"),
        ),
        "Login": _object(
            {"username": _text(64), "userName": _text(64), "password": _text(255, minLength=1)},
            ("username", "password"),
        ),
        "NewUser": _object(
            {
                "userName": _text(50),
                "username": _text(50),
                "password": _text(255, minLength=1),
                "email": _text(255),
                "mobile": _text(32),
            },
            ("userName", "password"),
        ),
        "RecordValue": _object(
            {
                "index": _integer(1),
                "type": _text(128, minLength=1),
                "auth": {"enum": ["public", "restricted", ""]},
                "data": {
                    "anyOf": [
                        _text(MAX_VALUE_CHARS),
                        _object(
                            {"format": {"const": "string"}, "value": _text(MAX_VALUE_CHARS)},
                            ("value",),
                        ),
                    ]
                },
            },
            ("index", "type", "data"),
        ),
        "IdentifierRecord": _object(
            {
                "handle": _text(MAX_HANDLE_CHARS, minLength=1),
                "templateVersion": _text(128, minLength=1),
                "value": {"type": "array", "items": _ref("RecordValue")},
            },
            ("handle", "templateVersion"),
        ),
        "RecordBatch": {
            "anyOf": [
                {
                    "type": "array",
                    "items": _ref("IdentifierRecord"),
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                },
                _object(
                    {
                        "handles": {
                            "type": "array",
                            "items": _ref("IdentifierRecord"),
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                        }
                    },
                    ("handles",),
                ),
            ]
        },
        "HandleBatch": {
            "anyOf": [
                {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                },
                _object(
                    {
                        "handles": {
                            "type": "array",
                            "items": {"type": "string", "minLength": 1},
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                        }
                    },
                    ("handles",),
                ),
            ]
        },
        "BatchItemResult": _object(
            {"handle": {"type": "string"}, "msg": {"type": "string"}}, ("handle", "msg")
        ),
        "BatchDeleteResult": _object(
            {"handle": {"type": "string"}, "code": {"enum": [1, -2]}, "msg": {"type": "string"}},
            ("handle", "code", "msg"),
        ),
        "IdentifierDetail": _object(
            {
                "code": {"const": "200"},
                "prefix": {"type": "string"},
                "handle": {"type": "string"},
                "templateVersion": {"type": "string"},
                "value": {
                    "type": "array",
                    "items": _object(
                        {
                            "index": {"type": "integer"},
                            "type": {"type": "string"},
                            "auth": {"enum": ["public", "restricted"]},
                            "data": _object(
                                {
                                    "format": {"enum": ["string", "base64"]},
                                    "value": {"type": "string"},
                                },
                                ("format", "value"),
                            ),
                        },
                        ("index", "type", "auth", "data"),
                    ),
                },
            },
            ("code", "prefix", "handle", "templateVersion", "value"),
        ),
        "TemplateItem": _object(
            {
                "name": _text(128, minLength=1),
                "idType": _text(128, minLength=1),
                "idIndex": _integer(1),
                "required": {"type": "boolean"},
                "state": _integer(),
                "public": {"type": "boolean"},
                "metadata": _object(
                    {
                        "type": _text(16),
                        "minLength": _nullable(_integer()),
                        "maxLength": _nullable(_integer()),
                    }
                ),
            },
            ("name", "idType"),
        ),
        "TemplateSpec": _object(
            {
                "prefix": _text(64, minLength=1),
                "version": _text(128, minLength=1),
                "items": {"type": "array", "items": _ref("TemplateItem")},
                "industryCategory": _text(8),
                "industrySpecific": _text(8),
                "industryTrade": _text(8),
                "industrySubclass": _text(8),
                "type": _integer(),
                "description": _text(1024),
            },
            ("prefix", "version", "items"),
        ),
        "Template": _object(
            {
                "id": {"type": "integer"},
                "prefix": {"type": "string"},
                "name": {"type": "string"},
                "handle": {"type": "string"},
                "version": {"type": "string"},
                "industryCategory": {"type": "string"},
                "industrySpecific": {"type": "string"},
                "industryTrade": {"type": "string"},
                "industrySubclass": {"type": "string"},
                "type": {"type": "integer"},
                "description": {"type": "string"},
                "items": {
                    "type": "array",
                    "items": _object(
                        {
                            "name": {"type": "string"},
                            "idType": {"type": "string"},
                            "idIndex": {"type": "integer"},
                            "metadataId": _nullable({"type": "integer"}),
                            "metadata": _object(
                                {
                                    "type": {"type": "string"},
                                    "minLength": _nullable({"type": "integer"}),
                                    "maxLength": _nullable({"type": "integer"}),
                                }
                            ),
                            "required": {"type": "boolean"},
                            "state": {"type": "integer"},
                            "public": {"type": "boolean"},
                        },
                        ("name", "idType", "idIndex"),
                    ),
                },
            },
            ("id", "prefix", "version", "items"),
        ),
        "Route": _nullable(
            _object(
                {
                    "hdlType": {"const": "HS_SITE"},
                    "ipType": {"type": "integer"},
                    "ip": {"type": "string"},
                    "tcpPort": _nullable({"type": "integer"}),
                    "udpPort": _nullable({"type": "integer"}),
                    "httpPort": _nullable({"type": "integer"}),
                },
                ("hdlType", "ipType", "ip"),
            )
        ),
        "PrefixDetail": _object(
            {
                "prefix": {"type": "string"},
                "createDate": {"type": "string"},
                "ghrName": {"type": "string"},
                "status": {"type": "integer"},
                "proxyState": {"type": "integer"},
                "entNameCn": {"type": "string"},
                "entSite": text_or_null,
                "entWebSite": text_or_null,
                "entIndustry": {"type": "string"},
                "entAddrCn": text_or_null,
                "entDesc": text_or_null,
                "route": _ref("Route"),
            },
            ("prefix", "status", "proxyState", "route"),
        ),
        "PrefixSummary": _object(
            {
                "id": {"type": "integer"},
                "entPrefix": {"type": "string"},
                "entprefix": {"type": "string"},
                "entId": {"type": "integer"},
                "state": {"type": "integer"},
                "entName": {"type": "string"},
                "proxyState": {"type": "integer"},
                "createDate": {"type": "string"},
                "updateDate": {"type": "string"},
            },
            ("id", "entPrefix", "state"),
        ),
        "PrefixConfig": _object(
            {
                "proxyServerId": _integer(),
                "entPrefixConfig": _object(
                    {
                        "entPrefix": _text(64, minLength=1),
                        "hdlType": {"const": "HS_SITE"},
                        "ipType": {"enum": [4, 6]},
                        "ip": _text(45, minLength=1),
                        "tcpPort": _integer(0, 65535),
                        "udpPort": _integer(0, 65535),
                        "httpPort": _integer(0, 65535),
                    },
                    ("entPrefix",),
                ),
            },
            ("entPrefixConfig",),
        ),
        "EnterpriseBasicInfo": _object(
            {
                "orgName": _text(255, minLength=1),
                "orgCrtType": _integer(),
                "orgCrtCode": _text(64, minLength=1),
                "contactName": _text(64, minLength=1),
                "contactPhone": _text(32, minLength=1),
                "orgNature": _integer(),
                "orgDesc": _text(4000),
                "orgAddr": _text(255),
                "industryCategory": _text(8),
                "industrySpecific": _text(8),
                "website": _text(255),
                "contactEmail": _text(255),
                "entPrefix": _text(64),
            },
            ("orgName", "orgCrtType", "orgCrtCode", "contactName", "contactPhone"),
        ),
        "EnterpriseApplication": _object(
            {
                "sysUser": _object(
                    {
                        "userName": _text(50, minLength=1),
                        "password": _text(255, minLength=1),
                        "email": _text(255),
                        "mobile": _text(32),
                    },
                    ("userName", "password"),
                ),
                "entBasicInfo": _ref("EnterpriseBasicInfo"),
                "entRegisterManageInfo": {"type": "object"},
                "entHostingAndIdentifyServeInfo": {"type": "object"},
            },
            ("sysUser", "entBasicInfo"),
        ),
        "EnterpriseUpgrade": _object(
            {
                "username": _text(50, minLength=1),
                "entBasicInfo": _ref("EnterpriseBasicInfo"),
                "entRegisterManageInfo": {"type": "object"},
                "entHostingAndIdentifyServeInfo": {"type": "object"},
            },
            ("username", "entBasicInfo"),
        ),
        "EnterpriseSummary": _object(
            {
                "id": {"type": "integer"},
                "orgName": {"type": "string"},
                "orgNature": text_or_null,
                "orgCrtType": {"type": "string"},
                "orgCrtCode": {"type": "string"},
                "orgDesc": text_or_null,
                "website": text_or_null,
                "entGeneralId": {"type": "string"},
                "openIds": {"type": "array"},
                "status": {"type": "integer"},
                "createDate": {"type": "string"},
                "updateDate": {"type": "string"},
            },
            ("id", "orgName", "status"),
        ),
        "EnterpriseDetail": _object(
            {
                "id": {"type": "integer"},
                "status": {"type": "integer"},
                "entBasicInfo": {"type": "object"},
                "entRegisterManageInfo": {"type": "object"},
                "entHostingAndIdentifyServeInfo": {"type": "object"},
                "entPrefixes": {
                    "type": "array",
                    "items": _object(
                        {
                            "prefix": {"type": "string"},
                            "state": {"type": "integer"},
                            "proxyState": {"type": "integer"},
                        },
                        ("prefix", "state", "proxyState"),
                    ),
                },
            },
            ("id", "status", "entBasicInfo", "entPrefixes"),
        ),
        "GrantSpec": _object(
            {
                "prefix": _text(64, minLength=1),
                "granteePrefix": _text(64),
                "granteeEntId": _integer(1),
                "templateVersion": _text(128),
                "items": {"type": "array", "items": _text(128)},
            },
            ("prefix",),
        ),
        "Grant": _object(
            {
                "id": {"type": "integer"},
                "prefix": {"type": "string"},
                "granteeEntId": {"type": "integer"},
                "granteeOrgName": {"type": "string"},
                "granteePrefixes": {"type": "array", "items": {"type": "string"}},
                "templateVersion": _nullable({"type": "string"}),
                "items": {"type": "array", "items": {"type": "string"}},
                "createDate": {"type": "string"},
                "updateDate": {"type": "string"},
            },
            ("id", "prefix", "granteeEntId", "items"),
        ),
        # --- the Handle REST API
        "RestError": _object(
            {
                "responseCode": {"type": "integer"},
                "handle": {"type": "string"},
                "message": {"type": "string"},
            },
            ("responseCode",),
        ),
        "Limited": _object(
            {
                "responseCode": {"type": "integer"},
                "message": {"type": "string"},
                "retryAfter": {"type": "integer"},
            },
            ("responseCode",),
        ),
        "RestDone": _object(
            {"responseCode": {"const": 1}, "handle": {"type": "string"}},
            ("responseCode", "handle"),
        ),
        "RestValue": _object(
            {
                "index": {"type": "integer"},
                "type": {"type": "string"},
                "data": _object(
                    {
                        "format": {"enum": ["string", "base64", "admin", "vlist", "site"]},
                        "value": {},
                    },
                    ("format", "value"),
                ),
                "ttl": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "timestamp": {"type": "string"},
                "permissions": {"type": "string", "pattern": "^[01]{4}$"},
                "references": {"type": "array", "items": value_ref},
            },
            ("index", "type", "data", "ttl"),
        ),
        "RestRecord": _object(
            {
                "responseCode": {"enum": [1, 200]},
                "handle": {"type": "string"},
                "values": {"type": "array", "items": _ref("RestValue")},
            },
            ("responseCode", "handle", "values"),
        ),
        "RestReferral": _object(
            {
                "responseCode": {"enum": [302, 303]},
                "handle": {"type": "string"},
                "referralHandle": {"type": "string"},
                "values": {"type": "array", "items": _ref("RestValue")},
            },
            ("responseCode", "handle", "values"),
        ),
        "RestListing": _object(
            {
                "responseCode": {"const": 1},
                "prefix": {"type": "string"},
                "totalCount": {"type": "string"},
                "page": {"type": "integer"},
                "pageSize": {"type": "integer"},
                "handles": {"type": "array", "items": {"type": "string"}},
            },
            ("responseCode", "prefix", "totalCount", "handles"),
        ),
        "RestValueIn": _object(
            {
                "index": {"anyOf": [_integer(0), {"type": "string", "pattern": "^[0-9]{1,9}$"}]},
                "type": {"type": "string", "minLength": 1},
                "data": {
                    "anyOf": [
                        {"type": "string"},
                        _object(
                            {
                                "format": {
                                    "enum": ["string", "base64", "hex", "admin", "vlist", "site"]
                                },
                                "value": {},
                            },
                            ("value",),
                        ),
                    ]
                },
                "ttl": {"anyOf": [_integer(0), {"type": "string"}]},
                "permissions": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "references": {"type": "array", "items": value_ref},
            },
            ("index", "type", "data"),
        ),
        "RestValuesBody": {
            "anyOf": [
                {"type": "array", "items": _ref("RestValueIn")},
                _object(
                    {
                        "handle": {"type": "string"},
                        "values": {"type": "array", "items": _ref("RestValueIn")},
                    },
                    ("values",),
                ),
                _ref("RestValueIn"),
            ]
        },
        "Site": _object(
            {
                "version": {"type": "integer"},
                "protocolVersion": {"type": "string"},
                "serialNumber": {"type": "integer"},
                "primarySite": {"type": "boolean"},
                "multiPrimary": {"type": "boolean"},
                "hashOption": {"type": "integer"},
                "attributes": {
                    "type": "array",
                    "items": _object(
                        {"name": {"type": "string"}, "value": {"type": "string"}},
                        ("name", "value"),
                    ),
                },
                "servers": {
                    "type": "array",
                    "items": _object(
                        {
                            "serverId": {"type": "integer"},
                            "address": {"type": "string"},
                            "publicKey": _object(
                                {"format": {"const": "base64"}, "value": {"type": "string"}}
                            ),
                            "interfaces": {
                                "type": "array",
                                "items": _object(
                                    {
                                        "query": {"type": "boolean"},
                                        "admin": {"type": "boolean"},
                                        "protocol": {"type": "string"},
                                        "port": {"type": "integer"},
                                    },
                                    ("query", "admin", "protocol", "port"),
                                ),
                            },
                        },
                        ("serverId", "address", "interfaces"),
                    ),
                },
            },
            ("version", "protocolVersion", "serialNumber", "servers"),
        ),
        "HrlsRecord": _object(
            {
                "handle": {"type": "string"},
                "values": {"type": "array", "items": _ref("RestValue")},
            },
            ("handle", "values"),
        ),
    }


@functools.cache
def _document_bytes() -> bytes:
    return json.dumps(_build(), ensure_ascii=False, indent=1).encode("utf-8")


def _version() -> str:
    try:
        return metadata.version("idnode")
    except metadata.PackageNotFoundError:
        return "0.0.0"


_UNLIMITED = ("/healthz", "/readyz", "/metrics")
_METHODS = ("get", "put", "post", "delete", "patch")


def _with_limits(paths: dict[str, Schema]) -> dict[str, Schema]:
    """Per-client limits (resolver.http.limits) answer 429 everywhere but health."""
    refused = {
        "description": "Over the client's rate or daily limit (never on loopback by default)",
        "headers": {"Retry-After": {"required": True, "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ref("Limited")}},
    }
    throttled = {  # the SNMS API says it in its envelope: a login locked out, a quota
        **refused,
        "description": f"{refused['description']}; too many failed logins; over a quota",
        "content": {"application/json": {"schema": {"anyOf": [_ref("Limited"), _ref("Failure")]}}},
    }
    for path, item in paths.items():
        if path in _UNLIMITED:
            continue
        for method in _METHODS:
            if method in item:
                snms = SNMS_TAG in item[method].get("tags", ())
                item[method]["responses"].setdefault("429", throttled if snms else refused)
    return paths


def _build() -> dict[str, Any]:
    paths = {**_snms_paths(), **_rest_paths(), **_proxy_paths(), **_health_paths()}
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
            {"name": SNMS_TAG, "description": "SNMS v5-compatible admin API"},
            {"name": REST_TAG, "description": "HANDLE.NET 9-compatible REST API"},
            {"name": "hrls", "description": "Reverse lookup (EUDAT HRLS)"},
            {"name": "proxy", "description": "Redirect proxy and lookup page"},
            {"name": "health", "description": "Liveness, readiness, metrics"},
            {"name": "meta", "description": "This document"},
        ],
        "paths": _with_limits(paths),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token from POST /identity/token (valid 24 h)",
                },
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "index%3Ahandle:HS_SECKEY, or accessKey:secretKey",
                },
            },
        },
    }


def document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    parsed: dict[str, Any] = json.loads(_document_bytes())
    return parsed


async def serve(request: web.Request) -> web.Response:
    return web.Response(body=_document_bytes(), content_type="application/json", charset="utf-8")
