"""Registry services against real SQLite and PostgreSQL databases: accounts,
enterprises and prefixes, templates. Identifiers: test_registry_identifiers.py; the
journal (transactions, audit, outbox): test_registry_journal.py.
"""

from __future__ import annotations

import pytest

from registry import schema, store
from registry.errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    LoginFailed,
    NotFound,
    Unauthenticated,
)
from registry.models import PERM_RESTRICTED, PrefixState, ProxyState, SiteRoute
from registry.secrets import dated_digest, is_sealed_value, open_value, sha256_hex
from registry.services import Actor, PageRequest, Registry
from registry.services.enterprises import HostedConfig, PrefixFilter
from registry.values import AdminRef
from tests.factories import (
    ADMIN_AK,
    ADMIN_SK,
    USER_PASSWORD,
    application,
    count,
    hosted_enterprise,
    record,
    template_spec,
    user_actor,
)

# --- accounts -----------------------------------------------------------------


async def test_bootstrap_admin_logs_in_and_is_idempotent(registry: Registry) -> None:
    principal = (await registry.accounts.login(ADMIN_AK, ADMIN_SK)).principal
    assert principal.is_admin and principal.via == "ak"
    users_before = await count(registry, schema.users)
    await registry.accounts.bootstrap_admin(ADMIN_AK, ADMIN_SK)
    assert await count(registry, schema.users) == users_before
    # A changed secret replaces the old one.
    await registry.accounts.bootstrap_admin(ADMIN_AK, "rotated")
    with pytest.raises(LoginFailed):
        await registry.accounts.login(ADMIN_AK, ADMIN_SK)
    assert (await registry.accounts.login(ADMIN_AK, "rotated")).principal.is_admin


async def test_bootstrap_writes_handle_identity(registry: Registry) -> None:
    async with registry.services.read() as conn:
        identity = await store.get_identifier(conn, "0.NA/88.100")
    assert identity is not None
    values = {v.index: v for v in identity.values}
    assert values[100].type == "HS_ADMIN"
    assert AdminRef.from_bytes(values[100].data) == AdminRef("0.NA/88.100", 300, 0x0FFF)
    assert values[300].type == "HS_SECKEY"
    assert values[300].permissions == PERM_RESTRICTED  # never publicly readable
    # Sealed at rest: the database holds no usable copy of the secret.
    assert ADMIN_SK.encode() not in values[300].data
    assert is_sealed_value(values[300].data)
    key = registry.services.node_key
    assert open_value(key, values[300].data, name_key="0.NA/88.100", index=300) == (
        ADMIN_SK.encode()
    )
    # Bound to its place: moved to another record or index, the seal does not open.
    assert open_value(key, values[300].data, name_key="88.100.1/x", index=300) is None
    assert open_value(key, values[300].data, name_key="0.NA/88.100", index=301) is None
    # A restart with the same secret leaves the record (and the audit log) alone.
    audit_before = await count(registry, schema.audit_log)
    await registry.accounts.bootstrap_admin(ADMIN_AK, ADMIN_SK)
    assert await count(registry, schema.audit_log) == audit_before


async def test_login_forms(registry: Registry, admin: Actor) -> None:
    await registry.enterprises.apply(admin, application(1))
    assert (
        await registry.accounts.login("user1", USER_PASSWORD)
    ).principal.enterprise_id is not None
    today = registry.services.local_date()
    dated = dated_digest(sha256_hex(USER_PASSWORD), today)
    assert (await registry.accounts.login("user1", dated, dated=True)).principal.username == "user1"
    stale = dated_digest(sha256_hex(USER_PASSWORD), "2019-08-15")
    for login, password, is_dated in [
        ("user1", "wrong", False),
        ("nobody", USER_PASSWORD, False),
        ("user1", stale, True),
        ("user1", USER_PASSWORD, True),  # the plain password is not the dated form
        ("", "", False),
    ]:
        with pytest.raises(LoginFailed, match="用户名/密码错误"):
            await registry.accounts.login(login, password, dated=is_dated)


async def test_access_keys(registry: Registry, admin: Actor) -> None:
    await registry.enterprises.apply(admin, application(1))
    user = await user_actor(registry, 1)
    ak, sk = await registry.accounts.create_access_key(user, "user1")
    principal = (await registry.accounts.login(ak, sk)).principal
    assert principal.username == "user1" and principal.via == "ak"
    await registry.enterprises.apply(admin, application(2))
    with pytest.raises(Forbidden):
        await registry.accounts.create_access_key(user, "user2")


async def test_register_user_is_admin_only_and_unique(registry: Registry, admin: Actor) -> None:
    digest = sha256_hex("pw")
    await registry.accounts.register_user(
        admin, username="ddd", password_digest=digest, email="d@x.cn", mobile="13900000001"
    )
    assert (await registry.accounts.login("ddd", "pw")).principal.username == "ddd"
    with pytest.raises(AlreadyExists):
        await registry.accounts.register_user(
            admin, username="eee", password_digest=digest, email="d@x.cn", mobile="13900000002"
        )
    with pytest.raises(InvalidRequest, match="sha256"):
        await registry.accounts.register_user(
            admin, username="fff", password_digest="plain", email=None, mobile="13900000003"
        )
    with pytest.raises(Forbidden):
        await registry.accounts.register_user(
            Actor(None), username="g", password_digest=digest, email=None, mobile="1"
        )


async def test_disabled_user_loses_access(registry: Registry, admin: Actor) -> None:
    await registry.enterprises.apply(admin, application(1))
    principal = (await registry.accounts.login("user1", USER_PASSWORD)).principal
    async with registry.services.change(admin) as change:
        await change.conn.execute(
            schema.users.update().values(status=0).where(schema.users.c.username == "user1")
        )
    with pytest.raises(Unauthenticated):
        await registry.accounts.principal(principal.user_id, "token")
    with pytest.raises(LoginFailed):
        await registry.accounts.login("user1", USER_PASSWORD)


# --- enterprises and prefixes -------------------------------------------------


async def test_apply_allocates_prefixes_under_the_node(registry: Registry, admin: Actor) -> None:
    _, first = await registry.enterprises.apply(admin, application(1))
    _, chosen = await registry.enterprises.apply(admin, application(2, prefix="88.100.40"))
    _, after = await registry.enterprises.apply(admin, application(3))
    assert (first.prefix, chosen.prefix, after.prefix) == ("88.100.1", "88.100.40", "88.100.41")
    assert first.state is PrefixState.ENABLED and first.proxy_state is ProxyState.NOT_HOSTED
    assert await registry.enterprises.count_served() == 3


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"ent_prefix": "88.200.1"}, InvalidRequest, "不属于本节点"),
        ({"ent_prefix": "88.100.1.2"}, InvalidRequest, "不属于本节点"),
        ({"ent_prefix": "88.100.x"}, InvalidRequest, "格式错误"),
        ({"org_crt_code": "91320500ABCDEFGHJ0"}, InvalidRequest, "校验位"),
        ({"org_crt_code": "123"}, InvalidRequest, "18位"),
        ({"org_crt_type": 7}, InvalidRequest, "orgCrtType"),
        ({"org_name": " "}, InvalidRequest, "orgName"),
        ({"contact_phone": ""}, InvalidRequest, "contactPhone"),
    ],
)
async def test_apply_rejects_bad_filings(
    registry: Registry,
    admin: Actor,
    change: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    import dataclasses

    with pytest.raises(error, match=message):
        await registry.enterprises.apply(admin, dataclasses.replace(application(1), **change))
    assert await registry.enterprises.count_served() == 0
    assert await count(registry, schema.users) == 1  # only the bootstrap admin


async def test_apply_rejects_duplicates_without_side_effects(
    registry: Registry, admin: Actor
) -> None:
    await registry.enterprises.apply(admin, application(1, prefix="88.100.5"))
    import dataclasses

    same_code = dataclasses.replace(application(2), org_crt_code=application(1).org_crt_code)
    with pytest.raises(AlreadyExists, match="已存在"):
        await registry.enterprises.apply(admin, same_code)
    with pytest.raises(AlreadyExists, match="已被分配"):
        await registry.enterprises.apply(admin, application(3, prefix="88.100.5"))
    same_user = dataclasses.replace(application(4), new_user=application(1).new_user)
    with pytest.raises(AlreadyExists, match="userName"):
        await registry.enterprises.apply(admin, same_user)
    assert await registry.enterprises.count_served() == 1
    assert await count(registry, schema.prefixes) == 1


async def test_only_admins_file_enterprises(registry: Registry, admin: Actor) -> None:
    await registry.enterprises.apply(admin, application(1))
    with pytest.raises(Forbidden):
        await registry.enterprises.apply(await user_actor(registry, 1), application(2))


async def test_enterprise_users_see_only_their_own(registry: Registry, admin: Actor) -> None:
    await registry.enterprises.apply(admin, application(1))
    await registry.enterprises.apply(admin, application(2))
    user = await user_actor(registry, 1)
    page = await registry.enterprises.page(
        user, org_name=None, start=None, end=None, page=PageRequest()
    )
    assert [e.org_name for e in page.items] == ["测试企业1有限公司"]
    assert (
        await registry.enterprises.page(
            admin, org_name="企业2", start=None, end=None, page=PageRequest()
        )
    ).total == 1
    prefixes = await registry.enterprises.prefix_page(user, PrefixFilter(), PageRequest())
    assert [p.prefix for p, _ in prefixes.items] == ["88.100.1"]
    with pytest.raises(Forbidden):
        await registry.enterprises.prefix(user, "88.100.2")
    with pytest.raises(Forbidden):
        await registry.enterprises.detail(user, 2)
    enterprise, _ = await registry.enterprises.detail(user, None)
    assert enterprise.org_name == "测试企业1有限公司"


async def test_prefix_configuration(registry: Registry, admin: Actor) -> None:
    _, prefix = await registry.enterprises.apply(admin, application(1))
    route = SiteRoute(6, "2031:0000:1F1F:0000:0000:0100:11A0:ADDF", tcp_port=2643)
    routed = await registry.enterprises.configure(admin, prefix.prefix, route)
    assert routed.route == SiteRoute(6, "2031:0:1f1f::100:11a0:addf", 2643, None, None)
    assert routed.proxy_state is ProxyState.NOT_HOSTED
    hosted = await registry.enterprises.configure(admin, prefix.prefix, HostedConfig(1))
    assert hosted.hosted and hosted.route is None
    for bad, message in [
        (SiteRoute(4, "::1", 1), "不符"),
        (SiteRoute(4, "300.1.1.1", 1), "不是合法"),
        (SiteRoute(5, "1.2.3.4", 1), "ipType"),
        (SiteRoute(4, "1.2.3.4"), "至少填写一个"),
        (SiteRoute(4, "1.2.3.4", 70000), "超出范围"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            await registry.enterprises.configure(admin, prefix.prefix, bad)
    with pytest.raises(NotFound):
        await registry.enterprises.configure(admin, "88.100.99", HostedConfig(1))


async def test_hosted_prefix_with_identifiers_cannot_become_routed(
    registry: Registry, admin: Actor
) -> None:
    prefix = await hosted_enterprise(registry, admin)
    await registry.identifiers.create(admin, record(f"{prefix}/a"))
    with pytest.raises(InvalidRequest, match="托管标识"):
        await registry.enterprises.configure(admin, prefix, SiteRoute(4, "10.0.0.1", 2641))


# --- templates ----------------------------------------------------------------


async def test_template_lifecycle(registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin)
    [template] = await registry.templates.get(admin, prefix, "1.0")
    assert [i.id_index for i in template.items] == [2000, 2001, 2002, 2003]
    assert template.handle == f"{prefix}/META_1.0"
    with pytest.raises(AlreadyExists):
        await registry.templates.create(admin, template_spec(prefix))
    await registry.templates.create(admin, template_spec(prefix, "2.0"))
    assert len(await registry.templates.get(admin, prefix, None)) == 2
    await registry.identifiers.create(admin, record(f"{prefix}/x"))
    with pytest.raises(InvalidRequest, match="已被标识使用"):
        await registry.templates.delete(admin, prefix, "1.0")
    await registry.templates.delete(admin, prefix, "2.0")
    with pytest.raises(NotFound):
        await registry.templates.get(admin, prefix, "2.0")


async def test_templates_belong_to_their_prefix_owner(registry: Registry, admin: Actor) -> None:
    await hosted_enterprise(registry, admin, 1)
    other = await hosted_enterprise(registry, admin, 2)
    user = await user_actor(registry, 1)
    with pytest.raises(Forbidden):
        await registry.templates.create(user, template_spec(other, "9"))
    with pytest.raises(Forbidden):
        await registry.templates.get(user, other, None)
