"""The document of registry.api.data: identifiers, one at a time and in batches."""

from __future__ import annotations

from ...services.identifiers import MAX_BATCH, MAX_SNMS_HANDLE_CHARS
from ...templates import MAX_VALUE_CHARS, MAX_VERSION_CHARS
from .envelope import SUCCESS, operation
from .schema import Schema, integer, json_object, query, ref, string

_HANDLE = string(MAX_SNMS_HANDLE_CHARS, minLength=1)


def paths() -> dict[str, Schema]:
    return {
        "/identityv2/data/detail": {
            "get": operation(
                "Read an identifier",
                ref("IdentifierDetail"),
                parameters=[query("handle", _HANDLE, required=True)],
            )
        },
        "/identityv2/data": {
            "post": operation(
                "Register an identifier (retry-safe)", SUCCESS, body=ref("IdentifierRecord")
            ),
            "put": operation(
                "Replace an identifier's values", SUCCESS, body=ref("IdentifierRecord")
            ),
            "delete": operation(
                "Delete an identifier, named in the query or the body",
                SUCCESS,
                parameters=[query("handle", _HANDLE)],
                body=json_object({"handle": _HANDLE}, ("handle",)),
                body_required=False,
            ),
        },
        "/identityv2/data/batchCreate": {
            "post": operation(
                f"Register up to {MAX_BATCH} identifiers, each atomically, with per-item results",
                {"type": "array", "items": ref("BatchItemResult")},
                body=ref("RecordBatch"),
            )
        },
        "/identityv2/data/batchUpdate": {
            "put": operation(
                f"Replace up to {MAX_BATCH} identifiers, each atomically, with per-item results",
                {"type": "array", "items": ref("BatchItemResult")},
                body=ref("RecordBatch"),
            )
        },
        "/identityv2/data/batchDelete": {
            "delete": operation(
                f"Delete up to {MAX_BATCH} identifiers, with per-item results",
                {"type": "array", "items": ref("BatchDeleteResult")},
                body=ref("HandleBatch"),
            )
        },
    }


def _batch_of(item: Schema) -> Schema:
    """One to MAX_BATCH items: a bare array, or the array under ``handles``."""
    array = {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_BATCH}
    return {"anyOf": [array, json_object({"handles": array}, ("handles",))]}


def schemas() -> dict[str, Schema]:
    return {
        "RecordValue": json_object(
            {
                "index": integer(1),
                "type": string(128, minLength=1),
                "auth": {"enum": ["public", "restricted", ""]},
                "data": {
                    "description": "The value's text. A value of type HS_PUBKEY holds a public "
                    "key (RSA, DSA or SM2): PEM, the base64 of its DER SubjectPublicKeyInfo, or an "
                    "SM2 point in hex; it is stored as HANDLE.NET's key record (RSA, DSA) or the "
                    "IDIS SDK's SM2_PUB_KEY record, and shown again as PEM.",
                    "anyOf": [
                        string(MAX_VALUE_CHARS),
                        json_object(
                            {"format": {"const": "string"}, "value": string(MAX_VALUE_CHARS)},
                            ("value",),
                        ),
                    ],
                },
            },
            ("index", "type", "data"),
        ),
        "IdentifierRecord": json_object(
            {
                "handle": _HANDLE,
                "templateVersion": string(MAX_VERSION_CHARS, minLength=1),
                "value": {"type": "array", "items": ref("RecordValue")},
            },
            ("handle", "templateVersion"),
        ),
        "RecordBatch": _batch_of(ref("IdentifierRecord")),
        "HandleBatch": _batch_of({"type": "string", "minLength": 1}),
        "BatchItemResult": json_object(
            {"handle": {"type": "string"}, "msg": {"type": "string"}}, ("handle", "msg")
        ),
        "BatchDeleteResult": json_object(
            {"handle": {"type": "string"}, "code": {"enum": [1, -2]}, "msg": {"type": "string"}},
            ("handle", "code", "msg"),
        ),
        "IdentifierDetail": json_object(
            {
                "code": {"const": "200"},
                "prefix": {"type": "string"},
                "handle": {"type": "string"},
                "templateVersion": {"type": "string"},
                "value": {
                    "type": "array",
                    "items": json_object(
                        {
                            "index": {"type": "integer"},
                            "type": {"type": "string"},
                            "auth": {"enum": ["public", "restricted"]},
                            "data": json_object(
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
    }
