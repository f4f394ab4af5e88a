"""Calls to the SNMS-compatible admin API in tests: the envelope of a success or of a
failure, and an enterprise filed (and hosted, with a template) through the API.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiClient
from tests.factories import apply_json, template_json


def ok(result: tuple[int, Any]) -> Any:
    status, body = result
    assert status == 200, (status, body)
    assert body["status"] == 1 and body["message"] == "success", body
    return body["data"]


def failed(result: tuple[int, Any], status: int = -2, http: int = 200) -> str:
    code, body = result
    assert code == http, (code, body)
    assert isinstance(body, dict) and set(body) == {"message", "status", "data"}, body
    assert body["status"] == status, body
    assert body["data"] is None
    return str(body["message"])


async def enterprise(api: ApiClient, n: int = 1, *, hosted: bool = True) -> str:
    """File enterprise n through the API; return its prefix."""
    ok(await api.call("POST", "/snms/api/v3/ent/apply", json=apply_json(n)))
    page = ok(await api.call("GET", f"/snms/api/v3/ent/page?orgName=测试企业{n}有限公司"))
    detail = ok(await api.call("GET", f"/snms/api/v3/ent/detail?id={page['content'][0]['id']}"))
    prefix = str(detail["entBasicInfo"]["entPrefix"])
    if hosted:
        ok(
            await api.call(
                "POST",
                "/snms/api/ent/config",
                json={"proxyServerId": 1, "entPrefixConfig": {"entPrefix": prefix}},
            )
        )
        ok(await api.call("POST", "/snms/api/v5/template", json=template_json(prefix)))
    return prefix
