"""The document of resolver.http.verify: ``GET /api/verify/{handle}``, trusted resolution."""

from __future__ import annotations

from registry.api.openapi.schema import Schema, integer, json_object, ref
from registry.trust import Verdict

from ... import codes as rc
from ..verify import VERIFY_ROOT
from .common import FORMAT, answer, handle_in_path, operation

_INDEXES: Schema = {"type": "array", "items": integer(0)}
_OPTIONAL_NUMBER: Schema = {"type": ["integer", "null"]}
_OPTIONAL_TEXT: Schema = {"type": ["string", "null"]}


def paths() -> dict[str, Schema]:
    return {
        VERIFY_ROOT + "/{handle}": {
            "get": operation(
                "Verify a record: its HS_SIGNATURE values, their HS_CERT chains to the trust "
                "root, and the verdict (HANDLE.NET's order of problems)",
                {
                    "200": answer(
                        ref("TrustReport"),
                        "The record's values and the verdict on them (trusted or not)",
                    )
                },
                (300, 400, 401, 403, 404, 503, 504),
                parameters=[
                    handle_in_path(),
                    *FORMAT,
                ],
            )
        }
    }


def schemas() -> dict[str, Schema]:
    link = json_object(
        {
            "location": _OPTIONAL_TEXT,
            "iss": _OPTIONAL_TEXT,
            "sub": _OPTIONAL_TEXT,
            "alg": {"enum": ["RS256", "DS256", "SM2256"]},
            "exp": _OPTIONAL_NUMBER,
            "nbf": _OPTIONAL_NUMBER,
            "iat": _OPTIONAL_NUMBER,
            "signatureVerifies": {"type": "boolean"},
            "signatureProblem": _OPTIONAL_TEXT,
            "dateInRange": {"type": "boolean"},
            "authorized": {"type": "boolean"},
            "selfIssued": {"type": "boolean"},
        },
        ("location", "iss", "sub", "alg", "signatureVerifies", "dateInRange", "authorized"),
    )
    verdicts = {"enum": [v.code for v in Verdict]}
    signature = json_object(
        {
            "index": integer(0),
            "verdict": verdicts,
            "reason": {"type": "string"},
            "rootTrusted": {"type": "boolean"},
            "verifiedValues": _INDEXES,
            "badDigestValues": _INDEXES,
            "missingValues": _INDEXES,
            "unsignedValues": _INDEXES,
            "chain": {"type": "array", "items": link},
        },
        ("index", "verdict", "reason", "chain"),
    )
    return {
        "TrustReport": json_object(
            {
                "responseCode": {"const": rc.RC_SUCCESS},
                "handle": {"type": "string"},
                "trusted": {"type": "boolean"},
                "verdict": verdicts,
                "message": {"type": "string", "description": "HANDLE.NET's words for it"},
                "reason": {"type": "string"},
                "trustRoot": {"type": "string"},
                "signedValues": _INDEXES,
                "unsignedValues": _INDEXES,
                "signatures": {"type": "array", "items": signature},
                "values": {"type": "array", "items": ref("RestValue")},
            },
            ("responseCode", "handle", "trusted", "verdict", "reason", "signatures", "values"),
        )
    }
