"""The registry's identifier services against real SQLite and PostgreSQL databases:
writing, reading and deleting records, restricted values, names, templates as rules,
enterprise boundaries, and batches.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from registry import schema, store
from registry.errors import AlreadyExists, Forbidden, InvalidRequest, NotFound
from registry.grammar import Grammar
from registry.models import PERM_PUBLIC, PERM_RESTRICTED
from registry.services import Actor, Registry, Services
from registry.services.enterprises import HostedConfig
from registry.services.identifiers import SnmsRecord
from registry.templates import RecordValue
from tests.factories import (
    ADMIN_AK,
    ADMIN_SK,
    application,
    count,
    hosted_enterprise,
    record,
    user_actor,
)


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
        Services(
            engine,
            node_prefix="88.100",
            node_key=node_key,
            grammar=Grammar(suffix_case_sensitive=False),
        )
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
