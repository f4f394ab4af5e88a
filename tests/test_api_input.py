"""Bad input to the admin API over real HTTP gets its envelope, never a 500: malformed
and pathological bodies and queries, bad handles, missing parameters, unknown endpoints,
oversized bodies, numbers and dates out of range.
"""

from __future__ import annotations

import pytest

from tests.conftest import ApiClient
from tests.factories import apply_json, record_json
from tests.snms_api import enterprise, failed


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("POST", "/identityv2/data", b"{not json"),
        ("POST", "/identityv2/data", b"\xff\xfe"),
        ("POST", "/identityv2/data", b""),
        ("POST", "/identityv2/data", b"[]"),
        ("POST", "/identityv2/data", b'{"handle": 5, "templateVersion": "1.0", "value": []}'),
        (
            "POST",
            "/identityv2/data",
            b'{"handle": "88.100.1/x", "templateVersion": "1.0", "value": {"index": 1}}',
        ),
        ("PUT", "/identityv2/data/batchUpdate", b'{"a": 1}'),
        (
            "POST",
            "/snms/api/v5/template",
            b'{"prefix": "88.100.1", "version": "1", "items": "nope"}',
        ),
        ("POST", "/snms/api/ent/config", b'{"entPrefixConfig": []}'),
        ("POST", "/snms/api/v3/ent/apply", b'{"entBasicInfo": {"orgCrtType": true}}'),
        ("POST", "/identity/token", b"null"),
    ],
)
async def test_malformed_bodies_get_envelopes(
    api: ApiClient, method: str, path: str, raw: bytes
) -> None:
    failed(await api.call(method, path, data=raw, headers={"Content-Type": "application/json"}))


@pytest.mark.parametrize(
    "handle",
    ["88.100.1", "88.100.1/" + "x" * 2100, "/x", "88..1/x", "88.100.1/a\x00b"],
)
async def test_bad_handles_get_envelopes(api: ApiClient, handle: str) -> None:
    await enterprise(api, 1)
    from urllib.parse import quote

    message = failed(await api.call("GET", f"/identityv2/data/detail?handle={quote(handle)}"))
    assert message
    failed(await api.call("POST", "/identityv2/data", json=record_json(handle)))


async def test_missing_parameters(api: ApiClient) -> None:
    assert failed(await api.call("GET", "/identityv2/data/detail")) == (
        "缺少必要的请求参数: handle"
    )
    assert "prefix" in failed(await api.call("GET", "/snms/api/prefix/query"))
    assert "prefix" in failed(await api.call("GET", "/snms/api/v5/template"))
    assert "currentPage" in failed(await api.call("GET", "/snms/api/prefix/page?currentPage=0"))
    assert "pageSize" in failed(await api.call("GET", "/snms/api/prefix/page?pageSize=x"))


async def test_unknown_endpoints_and_methods(api: ApiClient) -> None:
    assert "接口不存在" in failed(await api.call("GET", "/snms/api/nothing"), http=404)
    assert "PATCH" in failed(await api.call("PATCH", "/identityv2/data"), http=405)


async def test_oversized_body_is_refused_cleanly(api: ApiClient) -> None:
    huge = b"[" + b" " * (33 * 1024 * 1024) + b"]"
    failed(
        await api.call(
            "POST",
            "/identityv2/data/batchCreate",
            data=huge,
            headers={"Content-Type": "application/json"},
        ),
        http=413,
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"handle": "88.100.1/a\\u0000b", "templateVersion": "1.0", "value": []}',
        b'{"handle": "88.100.1/\\ud800", "templateVersion": "1.0", "value": []}',
        b'{"handle": "88.100.1/x", "templateVersion": "1.0\\u0000", "value": []}',
        # A lone surrogate as raw bytes, an upper-case escape, a NUL byte: every way in.
        b'{"handle": "88.100.1/\xed\xa0\x80", "templateVersion": "1.0", "value": []}',
        b'{"handle": "88.100.1/x", "templateVersion": "\\uDC00", "value": []}',
        b'{"handle": "88.100.1/x", "templateVersion": "1.0", "value": [], "\\ud83d": 1}',
        b"[" * 100000 + b"]" * 100000,
        b'{"a":' * 40 + b"1" + b"}" * 40,
        b'{"handle": "88.100.1/x", "templateVersion": "1.0", "value": [{"index": '
        + b"9" * 5000
        + b', "type": "URL", "data": "u"}]}',
        b'{"handle": "88.100.1/x", "templateVersion": "1.0", "value": [{"index": "\xc2\xb2",'
        b' "type": "URL", "data": "u"}]}',
    ],
)
async def test_unstorable_text_and_pathological_json(api: ApiClient, raw: bytes) -> None:
    await enterprise(api, 1)
    failed(
        await api.call(
            "POST", "/identityv2/data", data=raw, headers={"Content-Type": "application/json"}
        )
    )


@pytest.mark.parametrize(
    "path",
    [
        "/snms/api/prefix/page?entName=%00",
        "/snms/api/v3/ent/page?orgName=" + "x" * 5000,
        "/snms/api/v3/ent/detail?id=99999999999",
        "/snms/api/v3/ent/detail?id=%C2%B2",
        "/snms/api/prefix/page?currentPage=99999999999999999999",
        "/snms/api/file/99999999999",
        "/identityv2/data/detail?handle=88.100.1/%ED%A0%80",
        "/snms/api/prefix/page?startDate=0001-01-01",
        "/snms/api/v3/ent/page?endDate=0001-01-01 07:00:00",
        "/snms/api/v3/ent/page?endDate=9999-12-31 23:59:59",
    ],
)
async def test_pathological_queries(api: ApiClient, path: str) -> None:
    status, body = await api.call("GET", path)
    assert status == 200 and body["status"] in (1, -2), body


async def test_out_of_range_numbers_in_bodies(api: ApiClient) -> None:
    prefix = await enterprise(api, 1, hosted=False)
    config = {"proxyServerId": 2**40, "entPrefixConfig": {"entPrefix": prefix}}
    assert "不能大于" in failed(await api.call("POST", "/snms/api/ent/config", json=config))
    body = apply_json(2)
    body["entBasicInfo"]["orgCrtImgRid"] = 2**40
    assert "范围" in failed(await api.call("POST", "/snms/api/v3/ent/apply", json=body))
    body["entBasicInfo"]["orgCrtImgRid"] = "²"
    failed(await api.call("POST", "/snms/api/v3/ent/apply", json=body))
