"""Logins, tokens and credentials of the admin API over real HTTP on loopback, on both
databases: login forms, access keys, registration, and tokens that die with their credential.
"""

from __future__ import annotations

from typing import Any

import pytest

from registry.secrets import dated_digest, sha256_hex
from tests.conftest import ApiClient
from tests.factories import ADMIN_AK, ADMIN_SK, USER_PASSWORD
from tests.snms_api import enterprise, failed, ok


async def test_token_login_forms(api: ApiClient) -> None:
    token = ok(
        await api.call("POST", "/identity/token", json={"username": ADMIN_AK, "password": ADMIN_SK})
    )["token"]
    assert ok(await api.call("GET", "/snms/api/prefix/page", token=token))["totalElements"] == 0
    await enterprise(api, 1)
    dated = dated_digest(sha256_hex(USER_PASSWORD), _today())
    assert ok(
        await api.call("POST", "/identity/token/v1", json={"username": "user1", "password": dated})
    )["token"]
    message = failed(
        await api.call("POST", "/identity/token", json={"username": "user1", "password": "nope"})
    )
    assert message == "用户名/密码错误！"
    failed(
        await api.call(
            "POST", "/identity/token/v1", json={"username": "user1", "password": USER_PASSWORD}
        )
    )
    failed(await api.call("POST", "/identity/token", json={"username": "user1"}))


def _today() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dXNlcjpwdw=="}],
)
async def test_missing_or_bad_tokens_answer_minus_one(
    api: ApiClient, headers: dict[str, str]
) -> None:
    result = await api.call(
        "GET", "/identityv2/data/detail?handle=88.100.1/x", token="", headers=headers
    )
    assert "登录" in failed(result, status=-1) or "token" in failed(result, status=-1)


async def test_access_key_login(api: ApiClient) -> None:
    await enterprise(api, 1)
    user = await api.login("user1", USER_PASSWORD)
    keys = ok(await api.call("POST", "/identity/access-key", json={}, token=user))
    token = await api.login(keys["accessKey"], keys["secretKey"])
    assert ok(await api.call("GET", "/snms/api/prefix/query?prefix=88.100.1", token=token))


async def test_register_user(api: ApiClient) -> None:
    body = {
        "userName": "ddd",
        "password": sha256_hex("123456"),
        "email": "d@admin.com",
        "mobile": "13945056533",
        "remarks": "",
    }
    assert ok(await api.call("POST", "/identity/registry", json=body)) is True
    assert await api.login("ddd", "123456")
    assert "已存在" in failed(await api.call("POST", "/identity/registry", json=body))
    other = await api.login("ddd", "123456")
    body2 = dict(body, userName="eee", email="e@x.cn", mobile="1")
    failed(await api.call("POST", "/identity/registry", json=body2, token=other), status=-3)


async def test_access_keys_only_for_yourself(api: ApiClient) -> None:
    await enterprise(api, 1)
    user = await api.login("user1", USER_PASSWORD)
    for name in ("admin", "nobody-at-all"):  # no hint whether the user exists
        failed(
            await api.call("POST", "/identity/access-key", json={"username": name}, token=user),
            status=-3,
        )
    assert "不存在" in failed(
        await api.call("POST", "/identity/access-key", json={"username": "nobody-at-all"})
    )


async def test_tokens_die_with_their_credential(api: ApiClient, registry: Any) -> None:
    from registry import schema

    assert ok(await api.call("GET", "/snms/api/prefix/page"))  # admin AK token works
    await registry.accounts.bootstrap_admin(ADMIN_AK, "re-keyed")
    assert "token" in failed(await api.call("GET", "/snms/api/prefix/page"), status=-1)
    fresh = await api.login(ADMIN_AK, "re-keyed")
    assert ok(await api.call("GET", "/snms/api/prefix/page", token=fresh))
    async with registry.services.change(registry_actor()) as change:
        await change.conn.execute(schema.access_keys.update().values(status=0))
    failed(await api.call("GET", "/snms/api/prefix/page", token=fresh), status=-1)


def registry_actor() -> Any:
    from registry.services import SYSTEM_ACTOR

    return SYSTEM_ACTOR


async def test_password_change_revokes_user_tokens(api: ApiClient, registry: Any) -> None:
    from registry import schema
    from registry.passwords import StoredSecret

    await enterprise(api, 1)
    token = await api.login("user1", USER_PASSWORD)
    assert ok(await api.call("GET", "/snms/api/v3/ent/detail", token=token))
    new = StoredSecret.from_plain("new-password", registry.services.node_key)
    async with registry.services.change(registry_actor()) as change:
        await change.conn.execute(
            schema.users.update()
            .where(schema.users.c.username == "user1")
            .values(secret_hash=new.hash)
        )
    failed(await api.call("GET", "/snms/api/v3/ent/detail", token=token), status=-1)
