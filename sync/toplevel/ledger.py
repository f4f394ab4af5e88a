"""The mock top-level node's ledger: its own tables (SQLite by default, PostgreSQL optional).

It keeps what PROTOCOL.md says the top-level node keeps: registered nodes and
their keys, every event by (node, seq) with a content digest for idempotency,
the route table numbered by one global sequence, filings and daily
statistics. The schema is the mock's own and is created at start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry.audit import canonical_json
from registry.grammar import prefix_parents

metadata = MetaData()

nodes = Table(
    "tl_nodes",
    metadata,
    Column("node", String(64), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("site", LargeBinary, nullable=False),
    Column("name", String(255), nullable=False),
    Column("high_water", Integer, nullable=False, default=0),
    Column("registered_at", DateTime(timezone=True), nullable=False),
)

events = Table(
    "tl_events",
    metadata,
    Column("node", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("event", String(64), nullable=False),
    Column("subject", String(2048), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

routes = Table(
    "tl_routes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("prefix", String(255), nullable=False),
    Column("node", String(64), nullable=False),
    Column("site", LargeBinary, nullable=False),
    Column("hosted", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Index("ix_tl_routes_prefix", "prefix", "seq"),
)

backups = Table(
    "tl_backups",
    metadata,
    Column("node", String(64), primary_key=True),
    Column("name_key", String(2048), primary_key=True),
    Column("name", String(2048), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("record", Text, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
)

filings = Table(
    "tl_filings",
    metadata,
    Column("node", String(64), primary_key=True),
    Column("code", String(64), primary_key=True),
    Column("body", Text, nullable=False),
)

stats = Table(
    "tl_stats",
    metadata,
    Column("node", String(64), primary_key=True),
    Column("date", String(10), primary_key=True),
    Column("body", Text, nullable=False),
)


def event_digest(event: str, subject: str, payload: Any) -> str:
    text = "\n".join([event, subject, canonical_json(payload)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


async def create(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


@dataclass(frozen=True)
class Node:
    node: str
    public_key: bytes
    site: bytes
    name: str
    high_water: int


@dataclass(frozen=True)
class Route:
    seq: int
    prefix: str
    node: str
    site: bytes
    hosted: bool
    deleted: bool


async def get_node(conn: AsyncConnection, node: str) -> Node | None:
    row = (await conn.execute(select(nodes).where(nodes.c.node == node))).first()
    if row is None:
        return None
    return Node(row.node, row.public_key, row.site, row.name, row.high_water)


async def register_node(
    conn: AsyncConnection, node: str, public_key: bytes, site: bytes, name: str
) -> None:
    existing = await get_node(conn, node)
    if existing is None:
        await conn.execute(
            insert(nodes).values(
                node=node,
                public_key=public_key,
                site=site,
                name=name,
                high_water=0,
                registered_at=now(),
            )
        )
    else:
        await conn.execute(update(nodes).where(nodes.c.node == node).values(site=site, name=name))


async def stored_digest(conn: AsyncConnection, node: str, seq: int) -> str | None:
    row = await conn.execute(
        select(events.c.digest).where(events.c.node == node, events.c.seq == seq)
    )
    return row.scalar_one_or_none()


async def insert_event(
    conn: AsyncConnection,
    node: str,
    seq: int,
    event: str,
    subject: str,
    digest: str,
    payload: Any,
    created_at: str,
) -> None:
    await conn.execute(
        insert(events).values(
            node=node,
            seq=seq,
            event=event,
            subject=subject,
            digest=digest,
            payload=canonical_json(payload),
            created_at=created_at,
            received_at=now(),
        )
    )


async def advance_high_water(conn: AsyncConnection, node: str) -> int:
    """Move the node's high-water mark over every event now stored after it."""
    current = (await get_node(conn, node)).high_water  # type: ignore[union-attr]
    rows = await conn.execute(
        select(events.c.seq)
        .where(events.c.node == node, events.c.seq > current)
        .order_by(events.c.seq)
    )
    for (seq,) in rows:
        if seq != current + 1:
            break
        current = seq
    await conn.execute(update(nodes).where(nodes.c.node == node).values(high_water=current))
    return current


async def add_route(
    conn: AsyncConnection, prefix: str, node: str, site: bytes, *, hosted: bool, deleted: bool
) -> int:
    result = await conn.execute(
        insert(routes)
        .values(prefix=prefix, node=node, site=site, hosted=hosted, deleted=deleted)
        .returning(routes.c.seq)
    )
    return int(result.scalar_one())


async def routes_since(conn: AsyncConnection, since: int, limit: int) -> list[Route]:
    rows = await conn.execute(
        select(routes).where(routes.c.seq > since).order_by(routes.c.seq).limit(limit)
    )
    return [Route(r.seq, r.prefix, r.node, r.site, r.hosted, r.deleted) for r in rows]


async def current_route(conn: AsyncConnection, prefix: str) -> Route | None:
    """The latest route of exactly this prefix, unless withdrawn."""
    row = (
        await conn.execute(
            select(routes).where(routes.c.prefix == prefix).order_by(routes.c.seq.desc()).limit(1)
        )
    ).first()
    if row is None or row.deleted:
        return None
    return Route(row.seq, row.prefix, row.node, row.site, row.hosted, row.deleted)


async def route_of(conn: AsyncConnection, prefix: str) -> Route | None:
    """The route of the longest routed prefix that is ``prefix`` or above it."""
    for candidate in prefix_parents(prefix):
        route = await current_route(conn, candidate)
        if route is not None:
            return route
    return None


async def put_backup(
    conn: AsyncConnection, node: str, name_key: str, name: str, seq: int, record: Any, *,
    deleted: bool,
) -> None:  # fmt: skip
    key = (backups.c.node == node) & (backups.c.name_key == name_key)
    row = (await conn.execute(select(backups.c.seq).where(key))).first()
    if row is not None and row.seq > seq:
        return  # an older event arriving late does not undo a newer one
    values = {"name": name, "seq": seq, "record": canonical_json(record), "deleted": deleted}
    if row is None:
        await conn.execute(insert(backups).values(node=node, name_key=name_key, **values))
    else:
        await conn.execute(update(backups).where(key).values(**values))


async def live_names(conn: AsyncConnection, node: str) -> Sequence[str]:
    rows = await conn.execute(
        select(backups.c.name_key).where(backups.c.node == node, backups.c.deleted.is_(False))
    )
    return [row.name_key for row in rows]


async def put_keyed(conn: AsyncConnection, table: Table, node: str, key: str, body: Any) -> None:
    """Filings and statistics: the last report for (node, key) wins."""
    key_column = table.c.code if table is filings else table.c.date
    where = (table.c.node == node) & (key_column == key)
    updated = await conn.execute(update(table).where(where).values(body=canonical_json(body)))
    if not updated.rowcount:
        await conn.execute(
            insert(table).values(node=node, **{key_column.name: key}, body=canonical_json(body))
        )
