"""The document of resolver.http.rest: the HANDLE.NET 9 REST API under ``/api/``."""

from __future__ import annotations

from registry.api.openapi.schema import Schema, integer, json_object, path_param, query, ref, string

from ... import codes as rc
from ..rest import API_ROOT, MAX_LIST_PAGE, OID_ROOT
from .common import FORMAT, NAME_IN_PATH, REST_TAG, VALUE_REFERENCE, answer, operation

_INDEXES = {"type": "array", "items": integer(0), "maxItems": 16}
_RESOLUTION_PARAMETERS = [
    query("index", _INDEXES, "only values at these indexes (repeat the parameter)"),
    query(
        "type",
        {"type": "array", "items": string(128), "maxItems": 16},
        "only values of these types",
    ),
    query("auth", string(16), "read from the record, not the cache (any value)"),
    query("publicOnly", string(16), "true: public values only, even with credentials"),
    *FORMAT,
]
_RESOLUTION_ERRORS = (300, 400, 401, 403, 404, 503, 504)
_ENDPOINTS = ("handles", "prefixes", "site")
"""What follows ``/api/`` on the API's own routes (the catch-all leaves them alone)."""


def _resolution(summary: str, parameters: list[Schema]) -> Schema:
    return operation(
        summary,
        {"200": answer(ref("RestRecord"), "The values (RC 1), or none matched (RC 200)")},
        _RESOLUTION_ERRORS,
        parameters=parameters,
    )


def _handle_operations() -> Schema:
    return {
        "parameters": [
            path_param(
                "handle",
                NAME_IN_PATH,
                "The handle, percent-encoded (``88.100.1%2Fabc``; ``/`` may also stay as it is)",
                "0.NA/88.100",
            )
        ],
        "get": _resolution("Resolve a handle", _RESOLUTION_PARAMETERS),
        "post": _resolution(
            "Resolve a handle (as GET; HANDLE.NET accepts POST too)", _RESOLUTION_PARAMETERS
        ),
        "put": operation(
            "Create a handle, or replace, add or modify its values",
            {
                "200": answer(ref("RestDone"), "Done, something was overwritten"),
                "201": answer(ref("RestDone"), "Created"),
            },
            (400, 401, 403, 404, 409, 413, 503),
            parameters=[
                query(
                    "index",
                    {
                        "type": "array",
                        "items": {"anyOf": [integer(0), {"const": "various"}]},
                        "maxItems": 16,
                    },
                    "set only these values (must equal the body's indexes), or 'various'",
                ),
                query("overwrite", string(16), "false: never overwrite (default true)"),
                query("mintNewSuffix", string(16), "true: append a new unique suffix"),
                *FORMAT,
            ],
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": ref("RestValuesBody")}},
            },
        ),
        "delete": operation(
            "Delete a handle, or some of its values (index)",
            {"200": answer(ref("RestDone"), "Deleted")},
            (400, 401, 403, 404, 503),
            parameters=[
                query("index", _INDEXES, "only these values (repeat the parameter)"),
                *FORMAT,
            ],
        ),
    }


def _elsewhere(reserved: tuple[str, ...]) -> Schema:
    """Every method on any other path under ``/api/``: 405, as HANDLE.NET answers."""
    return {
        "parameters": [
            path_param(
                "rest",
                string(255, minLength=1, **{"not": {"enum": [*_ENDPOINTS, *reserved]}}),
                "anything that is no endpoint",
            )
        ],
        **{
            method: {
                "tags": [REST_TAG],
                "summary": "Any other path or method under /api/: 405, as HANDLE.NET",
                "responses": {"405": answer(ref("RestError"), "Unknown HTTP API endpoint")},
            }
            for method in ("get", "put", "post", "delete", "patch")
        },
    }


def paths(reserved: tuple[str, ...]) -> dict[str, Schema]:
    """The REST API's paths; ``reserved``: what else the node serves under ``/api/``."""
    return {
        API_ROOT: {
            "get": operation(
                "List the handles under a prefix (authenticated)",
                {"200": answer(ref("RestListing"), "The names")},
                (400, 401, 403, 404, 503),
                parameters=[
                    query("prefix", string(255, minLength=1), "the prefix", required=True),
                    query("page", {"type": "integer"}, "page number from 0; negative: all"),
                    query(
                        "pageSize", {"type": "integer", "maximum": MAX_LIST_PAGE}, "names a page"
                    ),
                    *FORMAT,
                ],
            )
        },
        API_ROOT + "/{handle}": _handle_operations(),
        OID_ROOT + "/{oid}": {
            "get": _resolution(
                "Resolve an identifier named by an OID (the answer of /api/handles/<oid>)",
                [
                    path_param(
                        "oid",
                        NAME_IN_PATH,
                        "dotted numeric arcs (1.2.156.86.1.3.7)",
                        "1.2.156.86.1",
                    ),
                    *_RESOLUTION_PARAMETERS,
                ],
            )
        },
        "/api/prefixes": {
            "get": operation(
                "Prefixes homed here (authenticated, as HANDLE.NET)",
                {
                    "200": answer(
                        json_object(
                            {
                                "responseCode": {"const": rc.RC_SUCCESS},
                                "prefixes": {"type": "array", "items": {"type": "string"}},
                            },
                            ("responseCode", "prefixes"),
                        ),
                        "The prefixes, as 0.NA/<prefix>",
                    )
                },
                (400, 401, 403, 503),
                parameters=FORMAT,
            )
        },
        "/api/site": {
            "get": operation(
                "This node's HS_SITE",
                {
                    "200": answer(
                        json_object(
                            {"responseCode": {"const": rc.RC_SUCCESS}, "site": ref("Site")},
                            ("responseCode", "site"),
                        ),
                        "The site information",
                    )
                },
                (400, 401, 403, 501),
                parameters=FORMAT,
            )
        },
        "/api/{rest}": _elsewhere(reserved),
    }


DATA_FORMATS_IN = ("string", "base64", "hex", "admin", "vlist", "site", "key")
"""The ``data`` formats a written value may use (resolver.http.values_json)."""


def schemas() -> dict[str, Schema]:
    return {
        "RestDone": json_object(
            {"responseCode": {"const": rc.RC_SUCCESS}, "handle": {"type": "string"}},
            ("responseCode", "handle"),
        ),
        "RestRecord": json_object(
            {
                "responseCode": {"enum": [rc.RC_SUCCESS, rc.RC_VALUES_NOT_FOUND]},
                "handle": {"type": "string"},
                "values": {"type": "array", "items": ref("RestValue")},
            },
            ("responseCode", "handle", "values"),
        ),
        "RestListing": json_object(
            {
                "responseCode": {"const": rc.RC_SUCCESS},
                "prefix": {"type": "string"},
                "totalCount": {"type": "string"},
                "page": {"type": "integer"},
                "pageSize": {"type": "integer"},
                "handles": {"type": "array", "items": {"type": "string"}},
            },
            ("responseCode", "prefix", "totalCount", "handles"),
        ),
        "RestValueIn": json_object(
            {
                "index": {"anyOf": [integer(0), {"type": "string", "pattern": "^[0-9]{1,9}$"}]},
                "type": {"type": "string", "minLength": 1},
                "data": {
                    "anyOf": [
                        {"type": "string"},
                        json_object(
                            {
                                "format": {"enum": [*DATA_FORMATS_IN]},
                                "value": {},
                            },
                            ("value",),
                        ),
                    ]
                },
                "ttl": {"anyOf": [integer(0), {"type": "string"}]},
                "permissions": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "references": {"type": "array", "items": VALUE_REFERENCE},
            },
            ("index", "type", "data"),
        ),
        "RestValuesBody": {
            "anyOf": [
                {"type": "array", "items": ref("RestValueIn")},
                json_object(
                    {
                        "handle": {"type": "string"},
                        "values": {"type": "array", "items": ref("RestValueIn")},
                    },
                    ("values",),
                ),
                ref("RestValueIn"),
            ]
        },
        "Site": _site(),
    }


def _site() -> Schema:
    """This node's HS_SITE as resolver.http.values_json writes it."""
    return json_object(
        {
            "version": {"type": "integer"},
            "protocolVersion": {"type": "string"},
            "serialNumber": {"type": "integer"},
            "primarySite": {"type": "boolean"},
            "multiPrimary": {"type": "boolean"},
            "hashOption": {"type": "integer"},
            "attributes": {
                "type": "array",
                "items": json_object(
                    {"name": {"type": "string"}, "value": {"type": "string"}}, ("name", "value")
                ),
            },
            "servers": {
                "type": "array",
                "items": json_object(
                    {
                        "serverId": {"type": "integer"},
                        "address": {"type": "string"},
                        "publicKey": json_object(
                            {
                                "format": {"enum": ["key", "base64"]},
                                "value": {"anyOf": [{"type": "string"}, ref("PublicKeyJwk")]},
                            }
                        ),
                        "interfaces": {
                            "type": "array",
                            "items": json_object(
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
    )
