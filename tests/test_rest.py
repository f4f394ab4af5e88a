"""The HANDLE.NET-compatible REST API over real HTTP, on both databases."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from registry.models import SiteRoute
from registry.services import Actor, Registry
from tests.conftest import ApiClient
from tests.factories import ADMIN_SK, application, hosted_enterprise

NODE_ID = "300%3A0.NA/88.100"


def basic(user: str, password: str) -> dict[str, str]:
    raw = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


ADMIN = basic(NODE_ID, ADMIN_SK)
JSON = {"Content-Type": "application/json"}


async def call(
    api: ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    return await api.call(method, path, data=data, token="", headers=headers or {})


@pytest.fixture
async def prefix(registry: Registry, admin: Actor) -> str:
    return await hosted_enterprise(registry, admin, 1, prefix="88.100.1")


VALUES = [
    {"index": 1, "type": "URL", "data": "https://example.org/p/1"},
    {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "ops@example.org"}},
    {"index": 3, "type": "BLOB", "data": {"format": "base64", "value": "AAEC"}},
    {"index": 4, "type": "SECRET", "data": "s", "permissions": "1100"},
    {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {
            "format": "admin",
            "value": {"handle": "0.NA/88.100.1", "index": "200", "permissions": "011111110011"},
        },
    },
]


async def test_create_resolve_modify_delete(api: ApiClient, prefix: str) -> None:
    path = f"/api/handles/{prefix}/Item-1"
    status, body = await call(api, "PUT", path, body={"values": VALUES}, headers={**ADMIN, **JSON})
    assert (status, body) == (201, {"responseCode": 1, "handle": f"{prefix}/Item-1"})

    status, body = await call(api, "GET", path)
    assert status == 200 and body["responseCode"] == 1 and body["handle"] == f"{prefix}/Item-1"
    by_index = {v["index"]: v for v in body["values"]}
    assert set(by_index) == {1, 2, 3, 100}  # index 4 is not public
    assert by_index[1]["data"] == {"format": "string", "value": "https://example.org/p/1"}
    assert by_index[3]["data"] == {"format": "base64", "value": "AAEC"}
    assert by_index[100]["data"] == {
        "format": "admin",
        "value": {"handle": "0.NA/88.100.1", "index": 200, "permissions": "011111110011"},
    }
    assert by_index[1]["ttl"] == 86400 and by_index[1]["timestamp"].endswith("Z")
    assert "permissions" not in by_index[1]

    status, body = await call(api, "GET", path + "?auth=true", headers=ADMIN)
    assert {v["index"] for v in body["values"]} == {1, 2, 3, 4, 100}
    assert {v["index"]: v for v in body["values"]}[4]["permissions"] == "1100"

    # Replace the whole record: 200, since existing data was overwritten.
    status, body = await call(api, "PUT", path, body=VALUES[:2], headers={**ADMIN, **JSON})
    assert status == 200 and body["responseCode"] == 1
    _, body = await call(api, "GET", path)
    assert [v["index"] for v in body["values"]] == [1, 2]

    # Add one value (201), then modify it (200); overwrite=false refuses a change.
    new = {"index": 7, "type": "DESC", "data": "seven"}
    status, _ = await call(api, "PUT", path + "?index=7", body=new, headers={**ADMIN, **JSON})
    assert status == 201
    status, _ = await call(
        api, "PUT", path + "?index=7", body={**new, "data": "SEVEN"}, headers={**ADMIN, **JSON}
    )
    assert status == 200
    status, body = await call(
        api, "PUT", path + "?index=7&overwrite=false", body=new, headers={**ADMIN, **JSON}
    )
    assert (status, body["responseCode"]) == (409, 201)
    status, body = await call(api, "PUT", path + "?index=8", body=new, headers={**ADMIN, **JSON})
    assert (status, body["responseCode"]) == (400, 4)  # query and body indexes differ

    status, body = await call(api, "DELETE", path + "?index=7", headers=ADMIN)
    assert (status, body) == (200, {"responseCode": 1, "handle": f"{prefix}/Item-1"})
    status, body = await call(api, "DELETE", path + "?index=7", headers=ADMIN)
    assert (status, body["responseCode"]) == (400, 200)
    status, body = await call(api, "DELETE", path, headers=ADMIN)
    assert (status, body) == (200, {"responseCode": 1, "handle": f"{prefix}/Item-1"})
    status, body = await call(api, "DELETE", path, headers=ADMIN)
    assert (status, body) == (
        404,
        {
            "responseCode": 100,
            "handle": f"{prefix}/Item-1",
            "message": f"handle {prefix}/Item-1 not found",
        },
    )
    status, body = await call(api, "GET", path)
    assert (status, body) == (404, {"responseCode": 100, "handle": f"{prefix}/Item-1"})


async def test_create_without_overwrite_and_mint(api: ApiClient, prefix: str) -> None:
    path = f"/api/handles/{prefix}/once"
    assert (
        await call(
            api, "PUT", path + "?overwrite=false", body=VALUES[:1], headers={**ADMIN, **JSON}
        )
    )[0] == 201
    status, body = await call(
        api, "PUT", path + "?overwrite=false", body=VALUES[:1], headers={**ADMIN, **JSON}
    )
    assert (status, body["responseCode"]) == (409, 101)
    status, body = await call(
        api,
        "PUT",
        f"/api/handles/{prefix}/?mintNewSuffix=true",
        body=VALUES[:1],
        headers={**ADMIN, **JSON},
    )
    assert status == 201 and body["handle"].startswith(f"{prefix}/") and len(body["handle"]) > 40
    assert (await call(api, "GET", "/api/handles/" + body["handle"]))[0] == 200


async def test_filters_echo_and_formats(api: ApiClient, prefix: str) -> None:
    await call(api, "PUT", f"/api/handles/{prefix}/Case", body=VALUES, headers={**ADMIN, **JSON})
    # The handle comes back exactly as asked, whatever the case (and the cache).
    for spelled in (f"0.NA/{prefix}", f"0.na/{prefix}", f"0.Na/{prefix}"):
        status, body = await call(api, "GET", f"/api/handles/{spelled}")
        assert (status, body["handle"]) == (200, spelled)
    status, body = await call(api, "GET", f"/api/handles/{prefix}/Case?type=email&index=1")
    assert [v["index"] for v in body["values"]] == [1, 2]
    status, body = await call(api, "GET", f"/api/handles/{prefix}/Case?type=NONE")
    assert (status, body) == (200, {"responseCode": 200, "handle": f"{prefix}/Case", "values": []})
    status, body = await call(api, "GET", f"/api/handles/{prefix}/Case?index=x")
    assert (status, body["responseCode"]) == (400, 4)
    async with api.session.get(f"{api.base}/api/handles/{prefix}/Case?callback=cb") as resp:
        text = await resp.text()
        assert resp.content_type == "application/javascript"
        assert text.startswith("cb({") and text.endswith("});")
    status, body = await call(api, "GET", f"/api/handles/{prefix}/Case?callback=alert(1)")
    assert status == 400
    async with api.session.get(f"{api.base}/api/handles/{prefix}/Case?pretty") as resp:
        assert "\n  " in await resp.text()
    async with api.session.get(f"{api.base}/api/handles/{prefix}/Case") as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_referrals_and_foreign_prefixes(
    api: ApiClient, registry: Registry, admin: Actor
) -> None:
    _, routed = await registry.enterprises.apply(admin, application(2))
    await registry.enterprises.configure(
        admin, routed.prefix, SiteRoute(6, "2001:db8::7", tcp_port=2643)
    )
    status, body = await call(api, "GET", f"/api/handles/{routed.prefix}/x")
    assert status == 300 and body["responseCode"] == 302
    assert body["referralHandle"] == f"0.NA/{routed.prefix}"
    site = body["values"][0]["data"]
    assert site["format"] == "site"
    assert site["value"]["servers"][0]["address"] == "2001:db8::7"
    assert site["value"]["servers"][0]["interfaces"] == [
        {"query": True, "admin": True, "protocol": "TCP", "port": 2643}
    ]
    status, body = await call(api, "GET", f"/api/handles/{routed.prefix}")
    assert status == 200 and "HS_SITE" in [v["type"] for v in body["values"]]
    status, body = await call(api, "GET", "/api/handles/88.999/x")
    assert (status, body["responseCode"]) == (400, 301)
    status, body = await call(api, "GET", "/api/handles/hdl:88.100.1/x")
    assert (status, body["responseCode"]) == (400, 301)


@pytest.mark.parametrize(
    ("path", "code", "http"),
    [
        ("/api/handles/88.100.1/%FF%FE", 102, 400),
        ("/api/handles/88..1/x", 102, 400),
        ("/api/handles/88.100.1/" + "x" * 2100, 102, 400),
        ("/api/handles/88.100.1/a%00b", 102, 400),
        ("/api/nothing", 4, 405),
        # A newline anywhere still reaches the API (a JSON error, not a plain 404).
        ("/api/handles/88.100.1/a%0Ab", 102, 400),
        ("/api/handles/88.100%0A.1/x", 102, 400),
        ("/api/oid/1.2.156%0A.86", 102, 400),
        ("/api/no%0Athing", 4, 405),
    ],
)
async def test_bad_names(api: ApiClient, prefix: str, path: str, code: int, http: int) -> None:
    status, body = await call(api, "GET", path)
    assert (status, body["responseCode"]) == (http, code), body


async def test_write_refusals(api: ApiClient, prefix: str) -> None:
    path = f"/api/handles/{prefix}/w"
    status, body = await call(api, "PUT", path, body=VALUES, headers=JSON)
    assert (status, body["responseCode"]) == (401, 402)
    status, body = await call(
        api, "PUT", path, body=VALUES, headers={**basic(NODE_ID, "wrong"), **JSON}
    )
    assert (status, body["responseCode"]) == (401, 402)
    status, body = await call(api, "PUT", path, body=VALUES, headers=ADMIN)
    assert (status, body["responseCode"]) == (400, 4)  # not application/json
    for bad in (
        "{",
        "42",
        '[{"index": 1}]',
        '[{"index": -1, "type": "URL", "data": "x"}]',
        '[{"index": 1, "type": "HS_ADMIN", "data": {"format": "admin", "value": 5}}]',
        '[{"index": 1, "type": "URL", "data": {"format": "base64", "value": "@@"}}]',
        '{"handle": "88.100.1/other", "values": []}',
    ):
        status, body = await api.call(
            "PUT", path, data=bad.encode(), token="", headers={**ADMIN, **JSON}
        )
        assert status == 400 and body["responseCode"] in (4, 202), (bad, body)
    status, body = await call(
        api, "PUT", "/api/handles/88.100.55/x", body=VALUES, headers={**ADMIN, **JSON}
    )
    assert (status, body["responseCode"]) == (404, 100)  # prefix not allocated
    status, body = await call(
        api, "PUT", "/api/handles/88.200.1/x", body=VALUES, headers={**ADMIN, **JSON}
    )
    assert (status, body["responseCode"]) == (400, 301)


async def test_enterprise_access_keys_and_isolation(
    api: ApiClient, registry: Registry, admin: Actor, prefix: str
) -> None:
    other = await hosted_enterprise(registry, admin, 2)
    from tests.factories import user_actor

    ak, sk = await registry.accounts.create_access_key(await user_actor(registry, 1), "user1")
    mine = basic(ak, sk)
    assert (
        await call(
            api, "PUT", f"/api/handles/{prefix}/ak", body=VALUES[:1], headers={**mine, **JSON}
        )
    )[0] == 201
    status, body = await call(
        api, "PUT", f"/api/handles/{other}/ak", body=VALUES[:1], headers={**mine, **JSON}
    )
    assert (status, body["responseCode"]) == (403, 401)
    status, body = await call(api, "GET", f"/api/handles?prefix={other}", headers=mine)
    assert (status, body["responseCode"]) == (403, 401)


async def test_enterprise_identity_in_its_prefix_record(api: ApiClient, prefix: str) -> None:
    """An enterprise admin stores an HS_SECKEY in 0.NA/<its prefix> and becomes 300:0.NA/..."""
    secret = {"index": 300, "type": "HS_SECKEY", "data": "ent-secret", "permissions": "1100"}
    status, _ = await call(
        api, "PUT", f"/api/handles/0.NA/{prefix}?index=300", body=secret, headers={**ADMIN, **JSON}
    )
    assert status == 201
    ent = basic(f"300%3A0.NA/{prefix}", "ent-secret")
    assert (
        await call(
            api, "PUT", f"/api/handles/{prefix}/by-ent", body=VALUES[:1], headers={**ent, **JSON}
        )
    )[0] == 201
    status, body = await call(api, "GET", f"/api/handles/0.NA/{prefix}")
    assert 300 not in [v["index"] for v in body["values"]]  # the secret stays private
    assert {v["type"] for v in body["values"]} >= {"HS_ADMIN", "DESC"}


async def test_list_prefixes_and_site(api: ApiClient, prefix: str) -> None:
    for i in range(5):
        await call(
            api, "PUT", f"/api/handles/{prefix}/L{i}", body=VALUES[:1], headers={**ADMIN, **JSON}
        )
    status, body = await call(
        api, "GET", f"/api/handles?prefix={prefix}&page=1&pageSize=2", headers=ADMIN
    )
    assert status == 200 and body["totalCount"] == "5" and body["prefix"] == f"0.NA/{prefix}"
    assert body["handles"] == [f"{prefix}/L2", f"{prefix}/L3"]
    assert (body["page"], body["pageSize"]) == (1, 2)
    _, everything = await call(api, "GET", f"/api/handles?prefix=0.NA/{prefix}", headers=ADMIN)
    assert len(everything["handles"]) == 5 and "page" not in everything
    _, counted = await call(api, "GET", f"/api/handles?prefix={prefix}&pageSize=0", headers=ADMIN)
    assert counted["handles"] == [] and counted["totalCount"] == "5"
    status, body = await call(api, "GET", f"/api/handles?prefix={prefix}")
    assert (status, body["responseCode"]) == (401, 402)
    status, body = await call(api, "GET", "/api/prefixes", headers=ADMIN)
    assert body["prefixes"] == ["0.NA/88.100", f"0.NA/{prefix}"]
    status, body = await call(api, "GET", "/api/prefixes")
    assert (status, body["responseCode"]) == (401, 402)
    status, body = await call(api, "GET", "/api/site")
    server = body["site"]["servers"][0]
    assert status == 200 and server["address"] == "127.0.0.1"
    assert server["interfaces"] == [
        {"query": True, "admin": True, "protocol": "HTTP", "port": 8000}
    ]


async def test_plain_http_credentials_refused_when_not_enabled(api: ApiClient, prefix: str) -> None:
    from resolver.http.keys import AUTH

    assert api.app is not None
    api.app[AUTH].allow_plain_http = False
    path = f"/api/handles/{prefix}/x"
    status, body = await call(api, "PUT", path, body=VALUES[:1], headers={**ADMIN, **JSON})
    assert (status, body["responseCode"]) == (403, 402)  # HANDLE.NET: a 401 becomes 403
    assert "HTTPS" in body["message"]
    status, body = await call(api, "PUT", path, body=VALUES[:1], headers=JSON)
    assert (status, body["responseCode"]) == (403, 402)
    # Reads with credentials still work: the credentials are ignored (anonymous view).
    assert (await call(api, "GET", f"/api/handles/{prefix}", headers=ADMIN))[0] == 200


async def test_reverse_lookup(api: ApiClient, prefix: str) -> None:
    for i in range(5):
        values = [
            {"index": 1, "type": "URL", "data": f"https://example.org/r/{i}"},
            {"index": 2, "type": "CHECKSUM", "data": "even" if i % 2 == 0 else "odd"},
        ]
        await call(
            api, "PUT", f"/api/handles/{prefix}/r{i}", body=values, headers={**ADMIN, **JSON}
        )
    await call(
        api,
        "PUT",
        f"/api/handles/{prefix}/odd_%25",
        body=[{"index": 1, "type": "URL", "data": "https://example.org/100%_sure"}],
        headers={**ADMIN, **JSON},
    )

    async def search(query: str, headers: dict[str, str] = ADMIN) -> tuple[int, Any]:
        return await call(api, "GET", f"/hrls/handles?{query}", headers=headers)

    assert (await search("URL=https://example.org/r/3")) == (200, [f"{prefix}/r3"])
    status, body = await search("URL=https://example.org/r/*&CHECKSUM=even")
    assert body == [f"{prefix}/r0", f"{prefix}/r2", f"{prefix}/r4"]
    _, page = await search("URL=https://example.org/r/*&limit=2&page=1")
    assert page == [f"{prefix}/r2", f"{prefix}/r3"]
    # % and _ are literal; only * is a wildcard.
    assert (await search("URL=https://example.org/100%25_sure"))[1] == [f"{prefix}/odd_%"]
    assert (await search("URL=https://example.org/1__%25*"))[1] == []
    _, records = await search("URL=https://example.org/r/1&retrieverecords=true")
    assert records[0]["handle"] == f"{prefix}/r1"
    assert {v["type"] for v in records[0]["values"]} == {"URL", "CHECKSUM"}
    _, scoped = await call(api, "GET", f"/hrls/handles/{prefix}?URL=*r/4", headers=ADMIN)
    assert scoped == [f"{prefix}/r4"]
    status, body = await search("URL=*")
    assert status == 200 and len(body) == 6
    status, body = await search("URL=x", headers={})
    assert (status, body["responseCode"]) == (401, 402)
    status, body = await search("limit=5")
    assert (status, body["responseCode"]) == (400, 4)
    status, body = await search("URL=x&limit=abc")
    assert (status, body["responseCode"]) == (400, 4)
    async with api.session.get(f"{api.base}/hrls/ping") as resp:
        assert await resp.text() == "OK"


async def test_review_edges(api: ApiClient, registry: Registry, admin: Actor, prefix: str) -> None:
    await call(api, "PUT", f"/api/handles/{prefix}/s", body=VALUES, headers={**ADMIN, **JSON})
    # No JSONP for credentialed answers: a foreign page must not read restricted values.
    async with api.session.get(
        f"{api.base}/api/handles/{prefix}/s?callback=cb&auth=true", headers=ADMIN
    ) as resp:
        assert resp.content_type == "application/json"
    # Malformed value parts are 400s, not crashes.
    for bad in (
        '[{"index": 1, "type": "URL", "data": "u", "references": 5}]',
        '[{"index": 1, "type": "URL", "data": "u", "ttl": Infinity}]',
        '[{"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": '
        '{"serialNumber": 1e400, "servers": []}}}]',
        '[{"index": 1, "type": "URL", "data": "u", "references": '
        '[{"handle": "a/b", "index": 99999999999}]}]',
        '[{"index": 1, "type": "URL", "data": "u"}, {"index": 1, "type": "X", "data": "v"}]',
    ):
        status, body = await api.call(
            "PUT",
            f"/api/handles/{prefix}/bad",
            data=bad.encode(),
            token="",
            headers={**ADMIN, **JSON},
        )
        assert status in (400, 409) and body["responseCode"] in (4, 201, 202), (bad, body)
    # Records directly under the node prefix are listed under it.
    await call(
        api, "PUT", "/api/handles/88.100/node-level", body=VALUES[:1], headers={**ADMIN, **JSON}
    )
    _, listing = await call(api, "GET", "/api/handles?prefix=88.100", headers=ADMIN)
    assert listing["handles"] == ["88.100/node-level"] and listing["totalCount"] == "1"
    # A derived prefix of a routed enterprise prefix: a prefix referral (303).
    _, routed = await registry.enterprises.apply(admin, application(3))
    await registry.enterprises.configure(admin, routed.prefix, SiteRoute(4, "10.9.9.9", 2641))
    status, body = await call(api, "GET", f"/api/handles/0.NA/{routed.prefix}.5")
    assert (status, body["responseCode"]) == (300, 303)
    assert body["values"][0]["type"] == "HS_SITE.PREFIX"
