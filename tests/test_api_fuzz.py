"""Arbitrary input at every HTTP endpoint: always an answer in the API's terms, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ApiClient

ENDPOINTS = [
    ("POST", "/identity/token"),
    ("POST", "/identity/token/v1"),
    ("POST", "/identity/registry"),
    ("POST", "/identity/access-key"),
    ("POST", "/identityv2/data"),
    ("PUT", "/identityv2/data"),
    ("DELETE", "/identityv2/data"),
    ("POST", "/identityv2/data/batchCreate"),
    ("PUT", "/identityv2/data/batchUpdate"),
    ("DELETE", "/identityv2/data/batchDelete"),
    ("POST", "/snms/api/v5/template"),
    ("PUT", "/snms/api/v5/template"),
    ("DELETE", "/snms/api/v5/template"),
    ("POST", "/snms/api/ent/config"),
    ("POST", "/snms/api/v3/ent/apply"),
    ("POST", "/snms/api/v3/ent/upgrade-apply"),
]
KEYS = [
    "handle",
    "templateVersion",
    "value",
    "index",
    "type",
    "data",
    "format",
    "auth",
    "prefix",
    "version",
    "items",
    "idType",
    "idIndex",
    "metadata",
    "entPrefixConfig",
    "entPrefix",
    "ipType",
    "ip",
    "tcpPort",
    "proxyServerId",
    "sysUser",
    "entBasicInfo",
    "orgCrtType",
    "orgCrtCode",
    "username",
    "password",
    "handles",
    "orgCrtImgRid",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["88.100.1/x", "2000", "1.0", "URL", ""])
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=6)
    ),
    max_leaves=25,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(endpoint=st.sampled_from(ENDPOINTS), document=documents)
async def test_any_json_gets_an_envelope(
    api: ApiClient, endpoint: tuple[str, str], document: Any
) -> None:
    method, path = endpoint
    raw = json.dumps(document, allow_nan=True).encode()
    status, body = await api.call(
        method, path, data=raw, headers={"Content-Type": "application/json"}
    )
    assert status in (200, 400, 404, 405, 413), (status, body)
    assert isinstance(body, dict) and set(body) == {"message", "status", "data"}, body
    assert body["status"] in (1, -1, -2, -3), body


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    query=st.dictionaries(
        st.sampled_from(
            [
                "handle",
                "prefix",
                "version",
                "currentPage",
                "pageSize",
                "startDate",
                "endDate",
                "entName",
                "orgName",
                "id",
            ]
        ),
        st.text(max_size=30),
        max_size=4,
    )
)
async def test_any_query_gets_an_envelope(api: ApiClient, query: dict[str, str]) -> None:
    for path in (
        "/identityv2/data/detail",
        "/snms/api/prefix/query",
        "/snms/api/prefix/page",
        "/snms/api/v5/template",
        "/snms/api/v3/ent/page",
        "/snms/api/v3/ent/detail",
    ):
        status, body = await api.call("GET", f"{path}?{urlencode(query)}")
        assert status == 200, (path, query, body)
        assert body["status"] in (1, -2, -3), (path, query, body)


# --- the Handle REST API and the proxy ----------------------------------------

_ADMIN = {
    "Authorization": "Basic " + base64.b64encode(b"300%3A0.NA/88.100:test-admin-secret").decode(),
    "Content-Type": "application/json",
}
raw_names = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "88.100.1/x",
            "0.NA/88.100",
            "88.100",
            "%",
            "%zz",
            "%ff%fe",
            "a%00b",
            "88.100.1/" + "x" * 3000,
            "../etc/passwd",
            "88.100.1//",
            "hdl:88.100.1/x",
        ]
    ),
)
params = st.dictionaries(
    st.sampled_from(
        [
            "index",
            "type",
            "auth",
            "publicOnly",
            "pretty",
            "callback",
            "overwrite",
            "mintNewSuffix",
            "prefix",
            "page",
            "pageSize",
            "URL",
            "limit",
            "x",
        ]
    ),
    st.text(max_size=12),
    max_size=4,
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "POST"]),
    name=raw_names,
    query=params,
    document=documents,
    encoded=st.booleans(),
    auth=st.booleans(),
)
async def test_rest_never_fails_with_500(
    api: ApiClient,
    method: str,
    name: str,
    query: dict[str, str],
    document: Any,
    encoded: bool,
    auth: bool,
) -> None:
    path = "/api/handles/" + (quote(name, safe="/") if encoded else quote(name, safe="/%:"))
    url = f"{path}?{urlencode(query)}" if query else path
    body = json.dumps(document).encode() if method in ("PUT", "POST") else None
    status, answer = await api.call(
        method, url, data=body, token="", headers=_ADMIN if auth else {}
    )
    assert status != 500 and status < 600, (status, answer)
    if isinstance(answer, dict):
        assert isinstance(answer.get("responseCode"), int), answer
        assert answer["responseCode"] != 2, answer
    for extra in (
        f"/{quote(name, safe='/')}",
        f"/?handle={quote(name)}",
        f"/hrls/handles?{urlencode(query)}",
    ):
        status, _ = await api.call("GET", extra, token="", headers=_ADMIN if auth else {})
        assert status < 500, (extra, status)
