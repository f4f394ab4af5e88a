"""The document of registry.api.grants: letting another enterprise read restricted values."""

from __future__ import annotations

from ...templates import MAX_VERSION_CHARS
from ..grants import PATH
from .envelope import operation
from .schema import Schema, integer, json_object, nullable, query, ref, string


def paths() -> dict[str, Schema]:
    return {
        PATH: {
            "get": operation(
                "Data grants: on a prefix, received by your enterprise, or all of yours",
                {"type": "array", "items": ref("Grant")},
                parameters=[
                    query("prefix", string(64), "the grants on this prefix"),
                    query("received", string(8), "true: the grants given to your enterprise"),
                ],
            ),
            "post": operation(
                "Let another enterprise read a prefix's restricted values (again: items replaced)",
                ref("Grant"),
                body=ref("GrantSpec"),
            ),
            "delete": operation(
                "Revoke a grant, by id (query or body) or by what it grants",
                json_object({"id": {"type": "integer"}}, ("id",)),
                parameters=[query("id", integer(1), "the grant")],
                body={"anyOf": [json_object({"id": integer(1)}, ("id",)), ref("GrantSpec")]},
                body_required=False,
            ),
        }
    }


def schemas() -> dict[str, Schema]:
    return {
        "GrantSpec": json_object(
            {
                "prefix": string(64, minLength=1),
                "granteePrefix": string(64),
                "granteeEntId": integer(1),
                "templateVersion": string(MAX_VERSION_CHARS),
                "items": {"type": "array", "items": string(128)},
            },
            ("prefix",),
        ),
        "Grant": json_object(
            {
                "id": {"type": "integer"},
                "prefix": {"type": "string"},
                "granteeEntId": {"type": "integer"},
                "granteeOrgName": {"type": "string"},
                "granteePrefixes": {"type": "array", "items": {"type": "string"}},
                "templateVersion": nullable({"type": "string"}),
                "items": {"type": "array", "items": {"type": "string"}},
                "createDate": {"type": "string"},
                "updateDate": {"type": "string"},
            },
            ("id", "prefix", "granteeEntId", "items"),
        ),
    }
