"""The document of resolver.http.signing: signing records over the REST API (an extension)."""

from __future__ import annotations

from registry.api.openapi.schema import Schema, json_object, query, ref
from registry.api.openapi.trust import sign_batch
from registry.services.signing import MAX_SIGN_BATCH, SIGNERS

from ... import codes as rc
from ..signing import MAX_HANDLE_CHARS, ROOT
from .common import FORMAT, answer, handle_in_path, operation

_SIGNER = query("signer", {"enum": list(SIGNERS)}, "insist on the enterprise's or the node's key")


def paths() -> dict[str, Schema]:
    return {
        ROOT: {
            "post": operation(
                f"Sign up to {MAX_SIGN_BATCH} records' public values, each on its own",
                {"200": answer(ref("RestSignedMany"), "One result for each handle, in order")},
                (400, 401, 403, 503),
                parameters=FORMAT,
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": sign_batch(MAX_HANDLE_CHARS)}},
                },
            )
        },
        ROOT + "/{handle}": {
            "post": operation(
                "Sign a record's public values: its old HS_SIGNATURE replaced by one at index "
                "400 up, with the enterprise's key (the node's when it has none)",
                {"200": answer(ref("RestSigned"), "Signed")},
                (400, 401, 403, 404, 503),
                parameters=[
                    handle_in_path(),
                    _SIGNER,
                    *FORMAT,
                ],
            )
        },
    }


def schemas() -> dict[str, Schema]:
    signed = json_object(
        {
            "responseCode": {"type": "integer"},
            "handle": {"type": "string"},
            "index": {"type": "integer"},
            "issuer": {"type": "string"},
            "message": {"type": "string"},
        },
        ("responseCode", "handle"),
    )
    return {
        "RestSigned": signed,
        "RestSignedMany": json_object(
            {
                "responseCode": {"const": rc.RC_SUCCESS},
                "results": {"type": "array", "items": signed},
            },
            ("responseCode", "results"),
        ),
    }
