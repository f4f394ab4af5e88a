"""The registry's journal against real SQLite and PostgreSQL databases: every change
writes its audit entry and outbox event in one transaction, in order and gap-free, the
audit log is append-only and tamper-evident, and what a database is bound to (node
prefix, case rule, node key) stays fixed.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import text

from registry import schema, store
from registry.errors import InvalidRequest
from registry.grammar import Grammar
from registry.services import Actor, Registry, Services
from tests.factories import count, hosted_enterprise, record


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
    other = Registry(Services(registry.engine, node_prefix="88.200", node_key=node_key))
    with pytest.raises(InvalidRequest, match="belongs to node prefix 88.100"):
        await other.ensure_node()


async def test_case_rule_is_fixed_per_database(registry: Registry, node_key: object) -> None:
    from registry.secrets import NodeKey

    assert isinstance(node_key, NodeKey)
    folding = Registry(
        Services(
            registry.engine,
            node_prefix="88.100",
            node_key=node_key,
            grammar=Grammar(suffix_case_sensitive=False),
        )
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
    other = Registry(Services(engine, node_prefix="88.100", node_key=node_key))
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

    stranger = Registry(
        Services(registry.engine, node_prefix="88.100", node_key=NodeKey.generate())
    )
    with pytest.raises(InvalidRequest, match="different node key"):
        await stranger.ensure_node()
    same = Registry(
        Services(registry.engine, node_prefix="88.100", node_key=registry.services.node_key)
    )
    await same.ensure_node()
