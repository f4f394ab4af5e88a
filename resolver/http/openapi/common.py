"""What the REST API's and reverse lookup's operations share in the document:
the tag, who may call, JSON-or-JSONP answers, the error bodies with their
statuses, the formatting parameters, the name in the path, the values an answer
carries."""

from __future__ import annotations

from typing import Any

from registry.api import MAX_BODY_BYTES
from registry.api.openapi.schema import Schema, json_object, path_param, query, ref, string

from ... import codes as rc
from ..rest import CALLBACK_PATTERN

REST_TAG = "handle-rest"
SECURITY: list[dict[str, list[str]]] = [{}, {"basicAuth": []}, {"bearerAuth": []}]
"""Anonymous, HTTP Basic (a Handle identity or an access key) or the SNMS bearer token."""

FORMAT = [
    query("pretty", string(16), "indent the JSON (present, true or yes)"),
    query(
        "callback",
        string(64, pattern=f"^{CALLBACK_PATTERN}$"),
        "JSONP: wrap the answer in this function call (ignored with credentials)",
    ),
]
NAME_IN_PATH = string(512, minLength=1, pattern="^[0-9][^\\n]*$")
"""A handle or an OID in the path: every name of the node starts with a digit."""


def handle_in_path() -> Schema:
    """The ``{handle}`` of a route about one record (signing it, verifying it)."""
    return path_param(
        "handle",
        NAME_IN_PATH,
        "The handle, percent-encoded (``/`` may stay as it is)",
        "88.100.1/SN-1",
    )


_MEANING = {
    300: "Referral: the prefix is served by another node (HS_SITE values)",
    400: "Malformed request, invalid handle or value, or a prefix not served here",
    401: "Authentication needed or failed (over HTTPS or with plain-HTTP auth allowed)",
    403: "Not permitted; over plain HTTP a needed authentication is a 403",
    404: "Handle not found",
    409: "Handle or value already exists",
    413: f"Body larger than {MAX_BODY_BYTES // 2**20} MiB",
    501: "Not supported here",
    503: "Storage unavailable or too busy",
    504: "The node serving this prefix did not answer (recursion)",
}


def answer(schema: Schema, description: str) -> Schema:
    """JSON, or JSONP (``callback``) as JavaScript."""
    return {
        "description": description,
        "content": {
            "application/json": {"schema": schema},
            "application/javascript": {"schema": {"type": "string"}},
        },
    }


def _errors(codes: tuple[int, ...]) -> dict[str, Schema]:
    responses: dict[str, Schema] = {}
    for code in codes:
        if code == 300:
            responses["300"] = answer(ref("RestReferral"), _MEANING[code])
        elif code == 413:
            responses["413"] = {
                "description": _MEANING[code],
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        else:
            responses[str(code)] = answer(ref("RestError"), _MEANING[code])
    return responses


def operation(summary: str, ok: dict[str, Schema], errors: tuple[int, ...], **extra: Any) -> Schema:
    """A REST operation answering ``ok`` or one of the ``errors`` (HTTP statuses)."""
    return {
        "tags": [REST_TAG],
        "summary": summary,
        "security": SECURITY,
        "responses": {**ok, **_errors(errors)},
        **extra,
    }


def rate_limited() -> Schema:
    """The answer of resolver.http.limits to a client over its rate or its day's requests."""
    return {
        "description": "Over the client's rate or daily limit (never on loopback by default)",
        "headers": {"Retry-After": {"required": True, "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": ref("Limited")}},
    }


VALUE_REFERENCE = json_object(
    {"handle": {"type": "string"}, "index": {"type": "integer"}}, ("handle", "index")
)
"""A value's reference to a value of another handle."""


def schemas() -> dict[str, Schema]:
    return {
        "RestError": json_object(
            {
                "responseCode": {"type": "integer"},
                "handle": {"type": "string"},
                "message": {"type": "string"},
            },
            ("responseCode",),
        ),
        "Limited": json_object(
            {
                "responseCode": {"type": "integer"},
                "message": {"type": "string"},
                "retryAfter": {"type": "integer"},
            },
            ("responseCode",),
        ),
        "RestValue": json_object(
            {
                "index": {"type": "integer"},
                "type": {"type": "string"},
                "data": json_object(
                    {
                        "format": {"enum": ["string", "base64", "admin", "vlist", "site", "key"]},
                        "value": {},
                    },
                    ("format", "value"),
                ),
                "ttl": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "timestamp": {"type": "string"},
                "permissions": {"type": "string", "pattern": "^[01]{4}$"},
                "references": {"type": "array", "items": VALUE_REFERENCE},
            },
            ("index", "type", "data", "ttl"),
        ),
        "PublicKeyJwk": {
            **json_object(
                {
                    "kty": {"enum": ["RSA", "DSA", "SM2"]},
                    **{name: {"type": "string"} for name in ("n", "e", "y", "p", "q", "g", "d")},
                },
                ("kty",),
            ),
            "description": "An HS_PUBKEY (data format key) as HANDLE.NET writes it: RSA n, e; "
            "DSA y, p, q, g (unsigned big-endian, base64url without padding); SM2 as the IDIS "
            "SDK writes it, d = the base64url DER SubjectPublicKeyInfo. Written back as "
            "HANDLE.NET's binary record (RSA, DSA) or IDIS's SM2_PUB_KEY record (SM2).",
        },
        "RestReferral": json_object(
            {
                "responseCode": {"enum": [rc.RC_SERVICE_REFERRAL, rc.RC_PREFIX_REFERRAL]},
                "handle": {"type": "string"},
                "referralHandle": {"type": "string"},
                "values": {"type": "array", "items": ref("RestValue")},
            },
            ("responseCode", "handle", "values"),
        ),
    }
