"""The document of registry.api.enterprises: enterprise filings."""

from __future__ import annotations

from .envelope import PAGE_PARAMETERS, SUCCESS, operation, spring_page
from .schema import Schema, integer, json_object, nullable, query, ref, string


def paths() -> dict[str, Schema]:
    return {
        "/snms/api/v3/ent/apply": {
            "post": operation(
                "File an enterprise with a new user and allocate its prefix (administrators)",
                SUCCESS,
                body=ref("EnterpriseApplication"),
            )
        },
        "/snms/api/v3/ent/upgrade-apply": {
            "post": operation(
                "File an enterprise for an existing user (administrators)",
                SUCCESS,
                body=ref("EnterpriseUpgrade"),
            )
        },
        "/snms/api/v3/ent/page": {
            "get": operation(
                "Page through enterprises",
                spring_page(ref("EnterpriseSummary")),
                parameters=[
                    query("orgName", string(255), "enterprise name contains"),
                    *PAGE_PARAMETERS,
                ],
            )
        },
        "/snms/api/v3/ent/detail": {
            "get": operation(
                "An enterprise's filing and prefixes",
                ref("EnterpriseDetail"),
                parameters=[query("id", integer(1), "the enterprise id")],
            )
        },
    }


def schemas() -> dict[str, Schema]:
    text_or_null = nullable({"type": "string"})
    return {
        "EnterpriseBasicInfo": json_object(
            {
                "orgName": string(255, minLength=1),
                "orgCrtType": integer(),
                "orgCrtCode": string(64, minLength=1),
                "contactName": string(64, minLength=1),
                "contactPhone": string(32, minLength=1),
                "orgNature": integer(),
                "orgDesc": string(4000),
                "orgAddr": string(255),
                "industryCategory": string(8),
                "industrySpecific": string(8),
                "website": string(255),
                "contactEmail": string(255),
                "entPrefix": string(64),
            },
            ("orgName", "orgCrtType", "orgCrtCode", "contactName", "contactPhone"),
        ),
        "EnterpriseApplication": json_object(
            {
                "sysUser": json_object(
                    {
                        "userName": string(50, minLength=1),
                        "password": string(255, minLength=1),
                        "email": string(255),
                        "mobile": string(32),
                    },
                    ("userName", "password"),
                ),
                "entBasicInfo": ref("EnterpriseBasicInfo"),
                "entRegisterManageInfo": {"type": "object"},
                "entHostingAndIdentifyServeInfo": {"type": "object"},
            },
            ("sysUser", "entBasicInfo"),
        ),
        "EnterpriseUpgrade": json_object(
            {
                "username": string(50, minLength=1),
                "entBasicInfo": ref("EnterpriseBasicInfo"),
                "entRegisterManageInfo": {"type": "object"},
                "entHostingAndIdentifyServeInfo": {"type": "object"},
            },
            ("username", "entBasicInfo"),
        ),
        "EnterpriseSummary": json_object(
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
        "EnterpriseDetail": json_object(
            {
                "id": {"type": "integer"},
                "status": {"type": "integer"},
                "entBasicInfo": {"type": "object"},
                "entRegisterManageInfo": {"type": "object"},
                "entHostingAndIdentifyServeInfo": {"type": "object"},
                "entPrefixes": {
                    "type": "array",
                    "items": json_object(
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
    }
