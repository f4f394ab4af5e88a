"""What every operation of the SNMS admin API shares in the document: the
envelope its answers come in (``{message, status, data}``, always HTTP 200 but
for a transport failure), the bearer token, paging."""

from __future__ import annotations

from .. import MAX_BODY_BYTES
from ..envelope import FAILED, INTERNAL, NO_PERMISSION, NOT_LOGGED_IN, OK
from ..fields import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .schema import Schema, integer, json_object, json_response, query, ref, string

SNMS_TAG = "snms"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
SUCCESS: Schema = {"const": True}
"""The ``data`` of an operation that answers nothing but success."""

PAGE_PARAMETERS = [
    query("currentPage", integer(1), "1-based page number (default 1)"),
    query("pageSize", integer(1, MAX_PAGE_SIZE), f"items a page (default {DEFAULT_PAGE_SIZE})"),
    query("startDate", string(32), "created at or after (yyyy-MM-dd[ HH:mm:ss])"),
    query("endDate", string(32), "created at or before (yyyy-MM-dd[ HH:mm:ss])"),
]


def _envelope_of(data: Schema) -> Schema:
    """Status 1 with ``data``, or a failure (-1 not logged in, -2 refused, -3 no
    permission) whose ``data`` is null — always HTTP 200, as SNMS answers."""
    return {
        "oneOf": [
            json_object(
                {"message": {"type": "string"}, "status": {"const": OK}, "data": data},
                ("message", "status", "data"),
            ),
            ref("Failure"),
        ]
    }


def _responses(data: Schema, *, body: bool) -> dict[str, Schema]:
    responses = {
        "200": json_response(
            _envelope_of(data), "The SNMS envelope: success, or the reason it failed"
        ),
        "503": json_response(
            ref("Unavailable"), f"The database is unavailable (status {INTERNAL})"
        ),
    }
    if body:
        responses["413"] = json_response(
            ref("Failure"), f"The body is larger than {MAX_BODY_BYTES // 2**20} MiB"
        )
    return responses


def operation(
    summary: str,
    data: Schema,
    *,
    body: Schema | None = None,
    body_required: bool = True,
    parameters: list[Schema] | None = None,
    public: bool = False,
) -> Schema:
    """An SNMS operation whose envelope carries ``data``, taking a JSON ``body``."""
    described: Schema = {
        "tags": [SNMS_TAG],
        "summary": summary,
        "security": [] if public else BEARER,
        "responses": _responses(data, body=body is not None),
    }
    if parameters:
        described["parameters"] = parameters
    if body is not None:
        described["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    return described


def spring_page(item: Schema) -> Schema:
    """One page of ``item``s, as Spring Data pages them (SNMS's page endpoints)."""
    return json_object(
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


def schemas() -> dict[str, Schema]:
    return {
        "Failure": json_object(
            {
                "message": {"type": "string"},
                "status": {"enum": [NOT_LOGGED_IN, FAILED, NO_PERMISSION, INTERNAL]},
                "data": {"type": "null"},
            },
            ("message", "status", "data"),
        ),
        "Unavailable": json_object(
            {
                "message": {"type": "string"},
                "status": {"const": INTERNAL},
                "data": {"type": "null"},
            },
            ("message", "status", "data"),
        ),
    }
