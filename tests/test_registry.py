"""Registry services against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from registry import schema, store
from registry.errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    LoginFailed,
    NotFound,
    Unauthenticated,
)
from registry.grammar import Grammar
from registry.models import PERM_PUBLIC, PERM_RESTRICTED, PrefixState, ProxyState, SiteRoute
from registry.secrets import dated_digest, is_sealed_value, open_value, sha256_hex
from registry.services import Actor, PageRequest, Registry
from registry.services.enterprises import HostedConfig, PrefixFilter
from registry.services.identifiers import SnmsRecord
from registry.templates import RecordValue
from registry.values import AdminRef
from tests.factories import (
    ADMIN_AK,
    ADMIN_SK,
    USER_PASSWORD,
    application,
    hosted_enterprise,
    record,
    template_spec,
)


async def count(registry: Registry, table: schema.Table) -> int:
    async with registry.services.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def user_actor(registry: Registry, n: int) -> Actor:
    return Actor((await registry.accounts.login(f"user{n}", USER_PASSWORD)).principal, "test")


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


# --- identifiers --------------------------------------------------------------


async def test_create_read_update_delete(registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin)
    user = await user_actor(registry, 1)
    assert await registry.identifiers.create(user, record(f"{prefix}/SN-1", note="n"))
    view = await registry.identifiers.detail(user, f"{prefix}/SN-1")
    values = {v.index: v for v in view.identifier.values}
    assert values[1001].type == "TEMPLATE" and values[1001].data == b"1.0"
    assert values[2000].data == b"https://example.com/x"
    assert values[2000].permissions == PERM_PUBLIC
    assert values[2000].timestamp > 0
    first_timestamp = values[2000].timestamp

    await asyncio.sleep(1.1)
    await registry.identifiers.update(user, record(f"{prefix}/SN-1", name="新名称"))
    updated = {
        v.index: v
        for v in (await registry.identifiers.detail(user, f"{prefix}/SN-1")).identifier.values
    }
    assert updated[2001].data == "新名称".encode()
    assert 2002 not in updated  # the update replaces the template's values
    assert updated[2000].timestamp == first_timestamp  # unchanged value keeps its time
    assert updated[2001].timestamp > first_timestamp

    await registry.identifiers.delete(user, f"{prefix}/SN-1")
    with pytest.raises(NotFound, match="没有找到标识"):
        await registry.identifiers.detail(user, f"{prefix}/SN-1")
    async with registry.services.read() as conn:
        orphans = (
            await conn.execute(
                select(func.count())
                .select_from(schema.identifier_values)
                .where(
                    schema.identifier_values.c.identifier_id.not_in(select(schema.identifiers.c.id))
                )
            )
        ).scalar_one()
    assert orphans == 0


async def test_restricted_values(registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin)
    rec = SnmsRecord(
        f"{prefix}/r",
        "1.0",
        (
            RecordValue(2000, "URL", "u"),
            RecordValue(2001, "name", "n", auth="restricted"),
            RecordValue(2003, "secretCode", "s"),
        ),
    )
    await registry.identifiers.create(admin, rec)
    values = {
        v.index: v
        for v in (await registry.identifiers.detail(admin, f"{prefix}/r")).identifier.values
    }
    assert values[2000].permissions == PERM_PUBLIC
    assert values[2001].permissions == PERM_RESTRICTED  # by the value's auth
    assert values[2003].permissions == PERM_RESTRICTED  # by the template item


async def test_create_is_idempotent_for_identical_retries(registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin)
    assert await registry.identifiers.create(admin, record(f"{prefix}/a"))
    outbox_before = await count(registry, schema.outbox)
    assert not await registry.identifiers.create(admin, record(f"{prefix}/a"))
    assert await count(registry, schema.outbox) == outbox_before
    with pytest.raises(AlreadyExists, match="标识已存在"):
        await registry.identifiers.create(admin, record(f"{prefix}/a", url="https://other"))


async def test_names_are_normalized(registry: Registry, admin: Actor) -> None:
    await hosted_enterprise(registry, admin, 1, prefix="88.100.7")
    await registry.identifiers.create(admin, record("88.100.7/Case"))
    view = await registry.identifiers.detail(admin, "88.100.7/Case")
    assert view.identifier.name == "88.100.7/Case"
    with pytest.raises(NotFound):
        await registry.identifiers.detail(admin, "88.100.7/case")  # suffix case-sensitive
    assert not await registry.identifiers.create(admin, record("88.100.7/Case"))


async def test_case_insensitive_suffix_setting(database_url: str, node_key: object) -> None:
    from registry.db import create_engine
    from registry.secrets import NodeKey

    assert isinstance(node_key, NodeKey)
    engine = create_engine(database_url)
    reg = Registry(
        engine,
        node_prefix="88.100",
        node_key=node_key,
        grammar=Grammar(suffix_case_sensitive=False),
    )
    try:
        await reg.ensure_node()
        await reg.accounts.bootstrap_admin(ADMIN_AK, ADMIN_SK)
        actor = Actor((await reg.accounts.login(ADMIN_AK, ADMIN_SK)).principal)
        prefix = await hosted_enterprise(reg, actor)
        await reg.identifiers.create(actor, record(f"{prefix}/AbC"))
        assert (await reg.identifiers.detail(actor, f"{prefix}/abc")).identifier.name.endswith(
            "AbC"
        )
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("handle", "message"),
    [
        ("88.100.1", "标识格式错误"),
        ("88.100.99/x", "前缀88.100.99不存在"),
        ("88.200.1/x", "不存在或不属于本节点"),
        ("0.NA/88.100.1", "前缀标识"),
        ("88.100.1/" + "x" * 300, "长度不能超过255"),
    ],
)
async def test_bad_names_are_refused(
    registry: Registry, admin: Actor, handle: str, message: str
) -> None:
    await hosted_enterprise(registry, admin)
    with pytest.raises(InvalidRequest, match=message):
        await registry.identifiers.create(admin, record(handle))


async def test_writes_need_a_hosted_prefix_and_a_known_template(
    registry: Registry, admin: Actor
) -> None:
    _, prefix = await registry.enterprises.apply(admin, application(1))
    with pytest.raises(InvalidRequest, match="未启用或未托管"):
        await registry.identifiers.create(admin, record(f"{prefix.prefix}/x"))
    await registry.enterprises.configure(admin, prefix.prefix, HostedConfig(1))
    with pytest.raises(InvalidRequest, match="模板1.0不存在"):
        await registry.identifiers.create(admin, record(f"{prefix.prefix}/x"))


async def test_enterprise_cannot_touch_other_prefixes(registry: Registry, admin: Actor) -> None:
    await hosted_enterprise(registry, admin, 1)
    other = await hosted_enterprise(registry, admin, 2)
    await registry.identifiers.create(admin, record(f"{other}/theirs"))
    user = await user_actor(registry, 1)
    with pytest.raises(Forbidden):
        await registry.identifiers.create(user, record(f"{other}/mine"))
    with pytest.raises(Forbidden):
        await registry.identifiers.detail(user, f"{other}/theirs")
    with pytest.raises(Forbidden):
        await registry.identifiers.delete(user, f"{other}/theirs")
    with pytest.raises(Forbidden):
        await registry.identifiers.update(user, record(f"{other}/theirs"))


async def test_batch_items_are_atomic_each(registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin)
    await registry.identifiers.create(admin, record(f"{prefix}/dup", url="https://first"))
    results = await registry.identifiers.batch_create(
        admin,
        [
            record(f"{prefix}/b1"),
            record(f"{prefix}/b2", name="名字太长了超过十个字符啊"),
            record(f"{prefix}/dup", url="https://second"),
            record(f"{prefix}/b3"),
        ],
    )
    assert [(r.handle, r.ok) for r in results] == [
        (f"{prefix}/b1", True),
        (f"{prefix}/b2", False),
        (f"{prefix}/dup", False),
        (f"{prefix}/b3", True),
    ]
    assert results[2].message == "标识已存在"
    async with registry.services.read() as conn:
        assert await store.get_identifier(conn, f"{prefix}/b2") is None
        dup = await store.get_identifier(conn, f"{prefix}/dup")
    assert dup is not None and {v.data for v in dup.values} >= {b"https://first"}
    deleted = await registry.identifiers.batch_delete(admin, [f"{prefix}/b1", f"{prefix}/none"])
    assert [(r.ok, r.message) for r in deleted] == [(True, "success"), (False, "标识不存在")]
    assert problems_free(await registry.verify_audit())


async def test_batch_repeats_retries_and_a_refused_bulk_write(
    registry: Registry, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = await hosted_enterprise(registry, admin)
    await registry.identifiers.create(admin, record(f"{prefix}/kept"))
    outbox_before = await count(registry, schema.outbox)
    batch = [
        record(f"{prefix}/kept"),  # a retry of what is stored: success, nothing new
        record(f"{prefix}/twice"),
        record(f"{prefix}/twice"),  # repeated within the batch, identical: success
        record(f"{prefix}/twice", url="https://other"),  # repeated, different: exists
        *(record(f"{prefix}/many-{i}") for i in range(100)),  # enough for COPY
    ]
    results = await registry.identifiers.batch_create(admin, batch)
    assert [r.ok for r in results[:4]] == [True, True, True, False]
    assert all(r.ok for r in results[4:])
    assert await count(registry, schema.outbox) - outbox_before == 101  # twice + 100
    async with registry.services.read() as conn:
        stored = await store.get_identifiers(conn, [f"{prefix}/twice", f"{prefix}/many-99"])
    assert len(stored) == 2
    assert b"https://example.com/x" in {v.data for v in stored[f"{prefix}/twice"].values}
    # The database refusing the bulk write (as a concurrent writer could make it):
    # every record is then written on its own, each atomic.
    real = store.insert_identifiers
    calls = 0

    async def refuse_bulk(conn: object, new: list[store.NewIdentifier]) -> list[int]:
        nonlocal calls
        calls += 1
        if len(new) > 1:
            raise IntegrityError("INSERT", None, Exception("simulated"))
        return await real(conn, new)  # type: ignore[arg-type]

    # The services write a batch through the package's name and one record
    # through insert_identifier, which calls the identifiers module's own.
    monkeypatch.setattr(store, "insert_identifiers", refuse_bulk)
    monkeypatch.setattr(store.identifiers, "insert_identifiers", refuse_bulk)
    again = await registry.identifiers.batch_create(
        admin, [record(f"{prefix}/late-{i}") for i in range(3)] + [record(f"{prefix}/kept")]
    )
    assert [r.ok for r in again] == [True, True, True, True] and calls == 4
    assert await count(registry, schema.outbox) - outbox_before == 104
    assert problems_free(await registry.verify_audit())


def problems_free(problems: list[str]) -> bool:
    return problems == []


async def test_batch_limit(registry: Registry, admin: Actor) -> None:
    with pytest.raises(InvalidRequest, match="2000"):
        await registry.identifiers.batch_create(
            admin, [record(f"88.100.1/{i}") for i in range(2001)]
        )


# --- transactions, audit and outbox -------------------------------------------


async def test_every_change_writes_audit_and_outbox_in_order(
    registry: Registry, admin: Actor
) -> None:
    prefix = await hosted_enterprise(registry, admin)
    await registry.identifiers.create(admin, record(f"{prefix}/o1"))
    await registry.identifiers.delete(admin, f"{prefix}/o1")
    async with registry.services.read() as conn:
        events = await store.outbox_events(conn)
        audit = await store.read_audit(conn)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["event"] for e in events][-6:] == [
        "enterprise.filed",
        "prefix.allocated",
        "prefix.configured",
        "template.created",
        "identifier.created",
        "identifier.deleted",
    ]
    created = events[-2]["payload"]
    assert created["handle"] == f"{prefix}/o1" and created["templateVersion"] == "1.0"
    assert audit[-1].action == "identifier.deleted" and audit[-1].actor == f"ak:{'admin'}"
    assert audit[-1].remote == "test"
    assert await registry.verify_audit() == []


async def test_failed_write_leaves_nothing_behind(
    registry: Registry, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = await hosted_enterprise(registry, admin)
    identifiers_before = await count(registry, schema.identifiers)
    values_before = await count(registry, schema.identifier_values)
    audit_before = await count(registry, schema.audit_log)

    async def broken_outbox(*args: object, **kwargs: object) -> list[int]:
        raise RuntimeError("outbox write failed")

    monkeypatch.setattr(store, "append_entries", broken_outbox)
    with pytest.raises(RuntimeError):
        await registry.identifiers.create(admin, record(f"{prefix}/half"))
    monkeypatch.undo()
    assert await count(registry, schema.identifiers) == identifiers_before
    assert await count(registry, schema.identifier_values) == values_before
    assert await count(registry, schema.audit_log) == audit_before
    async with registry.services.read() as conn:
        assert await store.get_identifier(conn, f"{prefix}/half") is None
    assert await registry.verify_audit() == []


async def test_concurrent_writers_keep_sequences_gap_free(registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin)
    names = [f"{prefix}/c{i}" for i in range(12)]
    same = [record(f"{prefix}/same")] * 6
    results = await asyncio.gather(
        *(registry.identifiers.create(admin, record(n)) for n in names),
        *(registry.identifiers.create(admin, r) for r in same),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    assert results[: len(names)] == [True] * len(names)
    assert sorted(results[len(names) :]) == [False] * 5 + [True]
    async with registry.services.read() as conn:
        seqs = [e["seq"] for e in await store.outbox_events(conn)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert await registry.verify_audit() == []


async def test_audit_log_is_append_only_in_the_database(registry: Registry) -> None:
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            async with registry.services.change(Actor(None)) as change:
                await change.conn.execute(text(statement))
    assert await registry.verify_audit() == []


async def test_tampering_is_detected(registry: Registry, admin: Actor, database_url: str) -> None:
    prefix = await hosted_enterprise(registry, admin)
    await registry.identifiers.create(admin, record(f"{prefix}/t"))
    sqlite = database_url.startswith("sqlite")
    async with registry.services.change(Actor(None)) as change:
        # Someone with direct database access switches the guard off first.
        if sqlite:
            await change.conn.execute(text("DROP TRIGGER audit_log_no_update"))
        else:
            await change.conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        await change.conn.execute(
            text("UPDATE audit_log SET detail = :d WHERE seq = 3").bindparams(
                d=json.dumps({"forged": True})
            )
        )
    problems = await registry.verify_audit()
    assert problems and "entry 3" in problems[0]


async def test_node_prefix_is_fixed_per_database(registry: Registry, node_key: object) -> None:
    from registry.secrets import NodeKey

    assert isinstance(node_key, NodeKey)
    other = Registry(registry.engine, node_prefix="88.200", node_key=node_key)
    with pytest.raises(InvalidRequest, match="belongs to node prefix 88.100"):
        await other.ensure_node()


async def test_case_rule_is_fixed_per_database(registry: Registry, node_key: object) -> None:
    from registry.secrets import NodeKey

    assert isinstance(node_key, NodeKey)
    folding = Registry(
        registry.engine,
        node_prefix="88.100",
        node_key=node_key,
        grammar=Grammar(suffix_case_sensitive=False),
    )
    with pytest.raises(InvalidRequest, match="case-sensitive"):
        await folding.ensure_node()


async def test_two_processes_share_the_sequence_head(
    registry: Registry, admin: Actor, database_url: str, node_key: object
) -> None:
    """Two engines stand for two node processes on one database."""
    from registry.db import create_engine
    from registry.secrets import NodeKey

    assert isinstance(node_key, NodeKey)
    prefix = await hosted_enterprise(registry, admin)
    engine = create_engine(database_url)
    other = Registry(engine, node_prefix="88.100", node_key=node_key)
    try:
        writes = [
            (registry if i % 2 else other).identifiers.create(admin, record(f"{prefix}/p{i}"))
            for i in range(16)
        ]
        batch = [record(f"{prefix}/q{i}") for i in range(20)]
        results = await asyncio.gather(
            *writes, other.identifiers.batch_create(admin, batch), return_exceptions=True
        )
    finally:
        await engine.dispose()
    assert not [r for r in results if isinstance(r, BaseException)], results
    async with registry.services.read() as conn:
        seqs = [e["seq"] for e in await store.outbox_events(conn, limit=10_000)]
        assert await store.count_identifiers(conn) == 36
    assert seqs == list(range(1, len(seqs) + 1))
    assert await registry.verify_audit() == []


async def test_node_key_is_fixed_per_database(registry: Registry) -> None:
    from registry.secrets import NodeKey

    stranger = Registry(registry.engine, node_prefix="88.100", node_key=NodeKey.generate())
    with pytest.raises(InvalidRequest, match="different node key"):
        await stranger.ensure_node()
    same = Registry(registry.engine, node_prefix="88.100", node_key=registry.services.node_key)
    await same.ensure_node()
