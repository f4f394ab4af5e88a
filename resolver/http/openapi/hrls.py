"""The document of resolver.http.hrls: reverse lookup (EUDAT HRLS)."""

from __future__ import annotations

from registry.api.openapi.schema import Schema, json_object, path_param, query, ref, string

from ..hrls import DEFAULT_LIMIT
from .common import FORMAT, answer, operation


def _search() -> Schema:
    return operation(
        "Handles having values of each given type equal to the text ('*' wildcards); "
        "conditions are AND-ed",
        {
            "200": answer(
                {
                    "anyOf": [
                        {"type": "array", "items": {"type": "string"}},
                        {"type": "array", "items": ref("HrlsRecord")},
                    ]
                },
                "Names, or whole records with retrieverecords=true",
            )
        },
        (400, 401, 403, 503),
        parameters=[
            query(
                "limit",
                {"type": "integer", "minimum": 0},
                f"at most this many (default {DEFAULT_LIMIT})",
            ),
            query("page", {"type": "integer", "minimum": 0}, "page from 0"),
            query("retrieverecords", string(16), "true: whole records"),
            *FORMAT,
            {
                "name": "conditions",
                "in": "query",
                "style": "form",
                "explode": True,
                "description": "TYPE=text conditions (URL=https://*, CHECKSUM=abc)",
                "schema": {
                    "type": "object",
                    "additionalProperties": string(255),
                    "maxProperties": 8,
                },
            },
        ],
    )


def paths() -> dict[str, Schema]:
    return {
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
        "/hrls/handles": {"get": _search()},
        "/hrls/handles/": {"get": _search()},
        "/hrls/handles/{prefix}": {
            "parameters": [
                path_param("prefix", string(255, minLength=1, pattern="^[^\\n]+$"), "only under it")
            ],
            "get": _search(),
        },
    }


def schemas() -> dict[str, Schema]:
    return {
        "HrlsRecord": json_object(
            {
                "handle": {"type": "string"},
                "values": {"type": "array", "items": ref("RestValue")},
            },
            ("handle", "values"),
        ),
    }
