"""The document of registry.api.trust: the node as an issuer of trusted resolution."""

from __future__ import annotations

from ...services.identifiers import MAX_SNMS_HANDLE_CHARS
from ...services.signing import MAX_SIGN_BATCH, SIGNERS
from ..trust import ROOT
from .envelope import operation
from .schema import Schema, json_object, nullable, query, ref, string


def sign_batch(handle_chars: int) -> Schema:
    """The body asking to sign several records, each on its own: ``handles`` (names of up
    to ``handle_chars``) and, if the caller insists on one, the ``signer`` (this API and
    the REST API's ``POST /api/signatures`` both take it)."""
    return json_object(
        {
            "handles": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SIGN_BATCH,
                "items": string(handle_chars, minLength=1),
            },
            "signer": {"enum": list(SIGNERS)},
        },
        ("handles",),
    )


def paths() -> dict[str, Schema]:
    return {
        f"{ROOT}/issuer": {
            "get": operation(
                "The node as an issuer: its identity, algorithm and certificate", ref("Issuer")
            )
        },
        f"{ROOT}/cert": {
            "get": operation(
                "An enterprise prefix's certificate (HS_CERT at index 400 of 0.NA/<prefix>)",
                ref("Certificate"),
                parameters=[query("prefix", string(64), "the enterprise prefix", required=True)],
            ),
            "post": operation(
                "Re-issue a prefix's certificate with a new key (the old one replaced), or "
                "revoke it (node administrators)",
                ref("Certificate"),
                body=json_object(
                    {"prefix": string(64, minLength=1), "revoke": {"type": "boolean"}},
                    ("prefix",),
                ),
            ),
        },
        f"{ROOT}/sign": {
            "post": operation(
                "Sign records' public values (HS_SIGNATURE at index 400 up): one handle, or "
                f"up to {MAX_SIGN_BATCH}, each signed or refused on its own",
                {"oneOf": [ref("SignResult"), {"type": "array", "items": ref("SignResult")}]},
                body={
                    "oneOf": [
                        json_object(
                            {
                                "handle": string(MAX_SNMS_HANDLE_CHARS, minLength=1),
                                "signer": {"enum": list(SIGNERS)},
                            },
                            ("handle",),
                        ),
                        sign_batch(MAX_SNMS_HANDLE_CHARS),
                    ]
                },
            )
        },
    }


def schemas() -> dict[str, Schema]:
    number_or_null = nullable({"type": "integer"})
    return {
        "Certificate": json_object(
            {
                "identity": {"type": "string"},
                "certificate": {
                    "type": "string",
                    "description": "the JWS, as the HS_CERT holds it",
                },
                "issuer": nullable({"type": "string"}),
                "subject": nullable({"type": "string"}),
                "issuedAt": number_or_null,
                "notBefore": number_or_null,
                "expires": number_or_null,
                "perms": {
                    "type": "array",
                    "items": json_object(
                        {"perm": {"type": "string"}, "handle": {"type": "string"}}, ("perm",)
                    ),
                },
                "publicKey": nullable({"type": "object"}),
                "keyHeld": {"type": "boolean"},
            },
            ("identity", "certificate", "perms", "keyHeld"),
        ),
        "Issuer": json_object(
            {
                "identity": {"type": "string"},
                "algorithm": {"enum": ["RS256", "SM2256"]},
                "selfRooted": {"type": "boolean"},
                "resignOnChange": {"type": "boolean"},
                "certificate": nullable(ref("Certificate")),
            },
            ("identity", "algorithm", "selfRooted", "resignOnChange", "certificate"),
        ),
        "SignResult": json_object(
            {
                "handle": {"type": "string"},
                "code": {"enum": [1, -2]},
                "msg": {"type": "string"},
                "index": number_or_null,
                "issuer": nullable({"type": "string"}),
            },
            ("handle", "code", "msg"),
        ),
    }
