"""The SNMS-compatible admin API over real HTTP on loopback, on both databases: the
identifier data API, templates, prefixes, enterprises and their hosting, OID-named
identifiers, health and metrics. Logins and tokens: test_api_identity.py; bad input:
test_api_input.py; attachments: test_api_attachments.py.
"""

from __future__ import annotations

import json

from registry.secrets import sha256_hex
from tests.conftest import ApiClient
from tests.factories import ADMIN_SK, USER_PASSWORD, apply_json, record_json, template_json
from tests.snms_api import enterprise, failed, ok

# --- the whole SNMS flow ------------------------------------------------------


async def test_snms_flow_end_to_end(api: ApiClient) -> None:
    prefix = await enterprise(api, 1)
    user = await api.login("user1", USER_PASSWORD)
    handle = f"{prefix}/xx002"
    assert ok(await api.call("POST", "/identityv2/data", json=record_json(handle), token=user))
    detail = ok(await api.call("GET", f"/identityv2/data/detail?handle={handle}", token=user))
    assert detail["handle"] == handle and detail["prefix"] == prefix
    assert detail["templateVersion"] == "1.0" and detail["code"] == "200"
    by_index = {v["index"]: v for v in detail["value"]}
    assert by_index[1001] == {
        "index": 1001,
        "type": "TEMPLATE",
        "auth": "public",
        "data": {"format": "string", "value": "1.0"},
    }
    assert by_index[2001]["data"] == {"format": "string", "value": "产品"}

    changed = record_json(handle, name="改名")
    assert ok(await api.call("PUT", "/identityv2/data", json=changed, token=user)) is True
    detail = ok(await api.call("GET", f"/identityv2/data/detail?handle={handle}", token=user))
    assert {v["index"]: v["data"]["value"] for v in detail["value"]}[2001] == "改名"

    assert ok(await api.call("DELETE", "/identityv2/data", json={"handle": handle}, token=user))
    assert (
        failed(await api.call("GET", f"/identityv2/data/detail?handle={handle}", token=user))
        == "没有找到标识"
    )
    assert (
        failed(await api.call("DELETE", "/identityv2/data", json={"handle": handle}, token=user))
        == "没有找到标识"
    )


async def test_create_retry_and_conflict(api: ApiClient) -> None:
    prefix = await enterprise(api, 1)
    body = record_json(f"{prefix}/r1")
    ok(await api.call("POST", "/identityv2/data", json=body))
    assert ok(await api.call("POST", "/identityv2/data", json=body)) is True  # retried
    changed = record_json(f"{prefix}/r1", url="https://elsewhere")
    assert failed(await api.call("POST", "/identityv2/data", json=changed)) == "标识已存在"


async def test_batch_endpoints(api: ApiClient) -> None:
    prefix = await enterprise(api, 1)
    items = [record_json(f"{prefix}/b{i}") for i in range(3)]
    items.insert(
        1,
        {
            "handle": f"{prefix}/bad",
            "templateVersion": "1.0",
            "value": [{"index": "x", "type": "URL", "data": "u"}],
        },
    )
    items.append(record_json(f"{prefix}/b0"))
    items[-1]["value"][0]["data"]["value"] = "https://different"
    result = ok(await api.call("POST", "/identityv2/data/batchCreate", json=items))
    assert [r["handle"] for r in result] == [i["handle"] for i in items]
    assert result[0]["msg"] == "success"
    assert "index" in result[1]["msg"]
    assert result[4]["msg"] == "标识已存在"
    updates = [record_json(f"{prefix}/b1", name="新"), record_json(f"{prefix}/nope")]
    result = ok(await api.call("PUT", "/identityv2/data/batchUpdate", json=updates))
    assert [r["msg"] for r in result] == ["success", "没有找到标识"]
    result = ok(
        await api.call(
            "DELETE", "/identityv2/data/batchDelete", json=[f"{prefix}/b0", f"{prefix}/gone", 42]
        )
    )
    assert [(r["code"], r["msg"]) for r in result][:2] == [(1, "success"), (-2, "标识不存在")]
    assert result[2]["code"] == -2 and result[2]["handle"] == ""
    result = ok(
        await api.call("DELETE", "/identityv2/data/batchDelete", json={"handles": [f"{prefix}/b2"]})
    )
    assert result == [{"handle": f"{prefix}/b2", "code": 1, "msg": "success"}]


async def test_batch_limit_and_empty_batch(api: ApiClient) -> None:
    prefix = await enterprise(api, 1)
    too_many = [record_json(f"{prefix}/{i}") for i in range(2001)]
    assert "2000" in failed(await api.call("POST", "/identityv2/data/batchCreate", json=too_many))
    failed(await api.call("POST", "/identityv2/data/batchCreate", json=[]))
    exactly = [record_json(f"{prefix}/m{i}") for i in range(2000)]
    result = ok(await api.call("POST", "/identityv2/data/batchCreate", json=exactly))
    assert len(result) == 2000 and all(r["msg"] == "success" for r in result)


async def test_secrets_never_shown_by_the_data_api(api: ApiClient) -> None:
    detail = ok(await api.call("GET", "/identityv2/data/detail?handle=0.NA/88.100"))
    assert [v["type"] for v in detail["value"]] == ["HS_ADMIN"]
    assert ADMIN_SK not in json.dumps(detail)


# --- templates, prefixes, enterprises ----------------------------------------


async def test_template_endpoints(api: ApiClient) -> None:
    prefix = await enterprise(api, 1)
    got = ok(await api.call("GET", f"/snms/api/v5/template?prefix={prefix}&version=1.0"))
    assert got["prefix"] == prefix and got["version"] == "1.0" and got["type"] == 1
    assert [(i["idType"], i["idIndex"]) for i in got["items"]] == [
        ("URL", 2000),
        ("name", 2001),
        ("note", 2002),
    ]
    assert all(isinstance(i["metadataId"], int) for i in got["items"])
    assert got["items"][1]["metadata"] == {"type": "string", "minLength": 1, "maxLength": 10}

    update = template_json(prefix)
    update["items"] = [
        {"name": "颜色", "idType": "color", "metadata": {"type": "string"}, "required": False},
        {
            "name": "网址",
            "idType": "URL",
            "idIndex": 2000,
            "state": 0,
            "metadata": {"type": "string"},
        },
    ]
    ok(await api.call("PUT", "/snms/api/v5/template", json=update))
    got = ok(await api.call("GET", f"/snms/api/v5/template?prefix={prefix}&version=1.0"))
    items = {i["idType"]: i for i in got["items"]}
    assert items["color"]["idIndex"] == 2003 and items["URL"]["state"] == 0
    assert ok(await api.call("GET", f"/snms/api/v5/template?prefix={prefix}"))[0]["id"] == got["id"]

    bad = template_json(prefix, "2.0")
    bad["items"][0]["idIndex"] = 1001
    assert "1001" in failed(await api.call("POST", "/snms/api/v5/template", json=bad))
    assert "不存在" in failed(
        await api.call("DELETE", "/snms/api/v5/template", json={"prefix": prefix, "version": "9"})
    )
    ok(await api.call("POST", "/snms/api/v3/template", json=template_json(prefix, "3.0")))
    ok(await api.call("DELETE", "/snms/api/v5/template", json={"prefix": prefix, "version": "3.0"}))


async def test_values_are_checked_against_the_template(api: ApiClient) -> None:
    prefix = await enterprise(api, 1)
    body = record_json(f"{prefix}/v")
    body["value"].append({"index": 1000, "type": "x", "data": {"format": "string", "value": "v"}})
    assert "1000" in failed(await api.call("POST", "/identityv2/data", json=body))
    body = record_json(f"{prefix}/v")
    body["value"][0]["index"] = 2999
    assert failed(await api.call("POST", "/identityv2/data", json=body)) == (
        "非法操作，索引2999在模板中不存在"
    )
    body = record_json(f"{prefix}/v")
    body["value"].pop()
    assert "缺少必填项name" in failed(await api.call("POST", "/identityv2/data", json=body))
    body = record_json(f"{prefix}/v", version="7.7")
    assert "模板7.7不存在" in failed(await api.call("POST", "/identityv2/data", json=body))
    body = record_json(f"{prefix}/v")
    body["value"][0]["data"]["format"] = "base64"
    assert "string" in failed(await api.call("POST", "/identityv2/data", json=body))


async def test_prefix_endpoints(api: ApiClient) -> None:
    prefix = await enterprise(api, 1)
    routed = await enterprise(api, 2, hosted=False)
    got = ok(await api.call("GET", f"/snms/api/prefix/query?prefix={prefix}"))
    assert got["prefix"] == prefix and got["status"] == 1 and got["proxyState"] == 4
    assert got["entNameCn"] == "测试企业1有限公司"
    assert got["ghrName"] == "工业互联网标识解析国家顶级节点--北京"
    assert len(got["createDate"]) == 19  # yyyy-MM-dd HH:mm:ss
    config = {
        "entPrefixConfig": {
            "entPrefix": routed,
            "hdlType": "HS_SITE",
            "ipType": "6",
            "ip": "2031:0000:1F1F:0000:0000:0100:11A0:ADDF",
            "tcpPort": "2643",
            "udpPort": "",
            "httpPort": "",
        }
    }
    assert ok(await api.call("POST", "/snms/api/ent/config", json=config)) is True
    got = ok(await api.call("GET", f"/snms/api/prefix/query?prefix={routed}"))
    assert got["route"] == {
        "hdlType": "HS_SITE",
        "ipType": 6,
        "ip": "2031:0:1f1f::100:11a0:addf",
        "tcpPort": 2643,
        "udpPort": None,
        "httpPort": None,
    }
    config["entPrefixConfig"]["tcpPort"] = ""
    assert "至少" in failed(await api.call("POST", "/snms/api/ent/config", json=config))
    page = ok(await api.call("GET", "/snms/api/prefix/page?currentPage=1&pageSize=1"))
    assert (page["totalElements"], page["totalPages"], page["number"]) == (2, 2, 1)
    assert page["first"] and not page["last"] and page["numberOfElements"] == 1
    assert page["content"][0]["entPrefix"] == prefix
    page2 = ok(await api.call("GET", "/snms/api/prefix/page?currentPage=2&pageSize=1"))
    assert page2["last"] and page2["content"][0]["entPrefix"] == routed
    filtered = ok(
        await api.call("GET", "/snms/api/prefix/page?entName=企业2&startDate=2000-01-01 00:00:00")
    )
    assert [c["entPrefix"] for c in filtered["content"]] == [routed]
    assert "startDate" in failed(await api.call("GET", "/snms/api/prefix/page?startDate=yesterday"))


async def test_enterprise_endpoints(api: ApiClient) -> None:
    await enterprise(api, 1)
    page = ok(await api.call("GET", "/snms/api/v3/ent/page?currentPage=1&pageSize=10"))
    item = page["content"][0]
    assert item["orgName"] == "测试企业1有限公司" and item["orgCrtType"] == "1"
    assert item["orgNature"] == "2"
    detail = ok(await api.call("GET", f"/snms/api/v3/ent/detail?id={item['id']}"))
    assert detail["entBasicInfo"]["orgCrtCode"] == item["orgCrtCode"]
    assert detail["entRegisterManageInfo"]["servSysBuildType"] == 1
    assert "password" not in json.dumps(detail)
    user = await api.login("user1", USER_PASSWORD)
    assert ok(await api.call("GET", "/snms/api/v3/ent/detail", token=user))["id"] == item["id"]
    failed(
        await api.call("POST", "/snms/api/v3/ent/apply", json=apply_json(2), token=user), status=-3
    )
    assert "已存在" in failed(await api.call("POST", "/snms/api/v3/ent/apply", json=apply_json(1)))
    failed(await api.call("GET", "/snms/api/v3/ent/detail?id=999"))


async def test_upgrade_apply_binds_an_existing_user(api: ApiClient) -> None:
    ok(
        await api.call(
            "POST",
            "/identity/registry",
            json={"userName": "later", "password": sha256_hex("pw"), "mobile": "13911112222"},
        )
    )
    body = apply_json(5)
    del body["sysUser"]
    body["username"] = "later"
    ok(await api.call("POST", "/snms/api/v3/ent/upgrade-apply", json=body))
    user = await api.login("later", "pw")
    assert ok(await api.call("GET", "/snms/api/prefix/page", token=user))["totalElements"] == 1


async def test_enterprise_isolation_over_http(api: ApiClient) -> None:
    await enterprise(api, 1)
    other = await enterprise(api, 2)
    ok(await api.call("POST", "/identityv2/data", json=record_json(f"{other}/theirs")))
    user = await api.login("user1", USER_PASSWORD)
    for method, path, body in [
        ("GET", f"/identityv2/data/detail?handle={other}/theirs", None),
        ("POST", "/identityv2/data", record_json(f"{other}/mine")),
        ("DELETE", "/identityv2/data", {"handle": f"{other}/theirs"}),
        ("GET", f"/snms/api/prefix/query?prefix={other}", None),
        ("GET", f"/snms/api/v5/template?prefix={other}&version=1.0", None),
        (
            "POST",
            "/snms/api/ent/config",
            {"proxyServerId": 1, "entPrefixConfig": {"entPrefix": other}},
        ),
    ]:
        failed(await api.call(method, path, json=body, token=user), status=-3)
    result = ok(
        await api.call(
            "POST", "/identityv2/data/batchCreate", json=[record_json(f"{other}/x")], token=user
        )
    )
    assert "没有权限" in result[0]["msg"]


async def test_hosting_is_requested_by_the_enterprise_and_granted_by_the_admin(
    api: ApiClient,
) -> None:
    prefix = await enterprise(api, 1, hosted=False)
    user = await api.login("user1", USER_PASSWORD)
    request = {"proxyServerId": 1, "entPrefixConfig": {"entPrefix": prefix}}
    assert ok(await api.call("POST", "/snms/api/ent/config", json=request, token=user))
    assert (
        ok(await api.call("GET", f"/snms/api/prefix/query?prefix={prefix}", token=user))[
            "proxyState"
        ]
        == 2
    )
    ok(await api.call("POST", "/snms/api/v5/template", json=template_json(prefix), token=user))
    assert "未启用或未托管" in failed(
        await api.call("POST", "/identityv2/data", json=record_json(f"{prefix}/early"), token=user)
    )
    wrong = {"proxyServerId": 7, "entPrefixConfig": {"entPrefix": prefix}}
    assert "托管服务器7不存在" in failed(await api.call("POST", "/snms/api/ent/config", json=wrong))
    ok(await api.call("POST", "/snms/api/ent/config", json=request))  # the admin grants
    assert ok(await api.call("GET", f"/snms/api/prefix/query?prefix={prefix}"))["proxyState"] == 4
    assert ok(
        await api.call("POST", "/identityv2/data", json=record_json(f"{prefix}/now"), token=user)
    )


# --- OID-named identifiers ----------------------------------------------------


async def test_oid_identifiers_through_the_admin_api(api: ApiClient) -> None:
    prefix = await enterprise(api, 1)
    other_prefix = await enterprise(api, 2)
    assert (prefix, other_prefix) == ("88.100.1", "88.100.2")
    user = await api.login("user1", USER_PASSWORD)
    oid = "1.2.156.86.1.1.42"  # under the arc of 88.100.1 (node arc 1.2.156.86.1)
    assert ok(await api.call("POST", "/identityv2/data", json=record_json(oid), token=user))
    detail = ok(await api.call("GET", f"/identityv2/data/detail?handle={oid}", token=user))
    assert (detail["handle"], detail["prefix"]) == (oid, prefix)
    changed = record_json(oid, name="改名")
    assert ok(await api.call("PUT", "/identityv2/data", json=changed, token=user)) is True

    # The same JSON as /api/handles, under its own path.
    status, by_oid = await api.call("GET", f"/api/oid/{oid}")
    assert status == 200 and by_oid["responseCode"] == 1 and by_oid["handle"] == oid
    assert "改名" in json.dumps(by_oid, ensure_ascii=False)
    assert await api.call("GET", f"/api/handles/{oid}") == (200, by_oid)

    other = await api.login("user2", USER_PASSWORD)
    refused = failed(
        await api.call("POST", "/identityv2/data", json=record_json(oid + ".1"), token=other),
        status=-3,
    )
    assert "not your prefix" in refused
    for bad in ("1.3.6.1.4.1.99", "1.2.156.86.1.1.07", "1.2.156.86.1.77.1"):
        assert failed(await api.call("POST", "/identityv2/data", json=record_json(bad), token=user))

    status, missing = await api.call("GET", "/api/oid/1.2.156.86.1.1.43")
    assert (status, missing["responseCode"]) == (404, 100)
    status, not_oid = await api.call("GET", f"/api/oid/{prefix}/x")
    assert (status, not_oid["responseCode"]) == (400, 102)
    status, foreign = await api.call("GET", "/api/oid/1.3.6.1.4.1.99")
    assert status != 200 and foreign["responseCode"] != 1
    status, arc = await api.call("GET", "/api/oid/1.2.156.86.1.1")  # the arc: the prefix
    assert status == 200 and arc["handle"] == "1.2.156.86.1.1"


# --- health and metrics -------------------------------------------------------


async def test_healthz(api: ApiClient) -> None:
    status, body = await api.call("GET", "/healthz")
    assert status == 200 and body == {"status": "ok", "database": "ok"}


async def test_metrics_endpoint(api: ApiClient) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(api.base + "/metrics") as got:
        assert got.status == 200 and got.content_type == "text/plain"
        text = await got.text()
    assert 'idnode_rate_limited_total{action="slipped",protocol="dns"}' in text
