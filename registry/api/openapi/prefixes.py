"""The document of registry.api.prefixes: enterprise prefixes and where each is served."""

from __future__ import annotations

from .envelope import PAGE_PARAMETERS, SUCCESS, operation, spring_page
from .schema import Schema, integer, json_object, nullable, query, ref, string


def paths() -> dict[str, Schema]:
    return {
        "/snms/api/prefix/query": {
            "get": operation(
                "An enterprise prefix and its enterprise",
                ref("PrefixDetail"),
                parameters=[
                    query("prefix", string(64), "the prefix (or entPrefix)"),
                    query("entPrefix", string(64), "the prefix (or prefix)"),
                ],
            )
        },
        "/snms/api/prefix/page": {
            "get": operation(
                "Page through enterprise prefixes",
                spring_page(ref("PrefixSummary")),
                parameters=[
                    query("entName", string(255), "enterprise name contains"),
                    query("entPrefix", string(64), "prefix starts with"),
                    *PAGE_PARAMETERS,
                ],
            )
        },
        "/snms/api/ent/config": {
            "post": operation(
                "Configure a prefix: hosted here (proxyServerId) or served by the enterprise "
                "(HS_SITE route)",
                SUCCESS,
                body=ref("PrefixConfig"),
            )
        },
    }


def schemas() -> dict[str, Schema]:
    text_or_null = nullable({"type": "string"})
    port = integer(0, 65535)
    return {
        "Route": nullable(
            json_object(
                {
                    "hdlType": {"const": "HS_SITE"},
                    "ipType": {"type": "integer"},
                    "ip": {"type": "string"},
                    "tcpPort": nullable({"type": "integer"}),
                    "udpPort": nullable({"type": "integer"}),
                    "httpPort": nullable({"type": "integer"}),
                },
                ("hdlType", "ipType", "ip"),
            )
        ),
        "PrefixDetail": json_object(
            {
                "prefix": {"type": "string"},
                "createDate": {"type": "string"},
                "ghrName": {"type": "string"},
                "status": {"type": "integer"},
                "proxyState": {"type": "integer"},
                "entNameCn": {"type": "string"},
                "entSite": text_or_null,
                "entWebSite": text_or_null,
                "entIndustry": {"type": "string"},
                "entAddrCn": text_or_null,
                "entDesc": text_or_null,
                "route": ref("Route"),
            },
            ("prefix", "status", "proxyState", "route"),
        ),
        "PrefixSummary": json_object(
            {
                "id": {"type": "integer"},
                "entPrefix": {"type": "string"},
                "entprefix": {"type": "string"},
                "entId": {"type": "integer"},
                "state": {"type": "integer"},
                "entName": {"type": "string"},
                "proxyState": {"type": "integer"},
                "createDate": {"type": "string"},
                "updateDate": {"type": "string"},
            },
            ("id", "entPrefix", "state"),
        ),
        "PrefixConfig": json_object(
            {
                "proxyServerId": integer(),
                "entPrefixConfig": json_object(
                    {
                        "entPrefix": string(64, minLength=1),
                        "hdlType": {"const": "HS_SITE"},
                        "ipType": {"enum": [4, 6]},
                        "ip": string(45, minLength=1),
                        "tcpPort": port,
                        "udpPort": port,
                        "httpPort": port,
                    },
                    ("entPrefix",),
                ),
            },
            ("entPrefixConfig",),
        ),
    }
