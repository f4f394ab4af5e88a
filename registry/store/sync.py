"""Sync with the top-level node (sync/PROTOCOL.md): the outbox as it is
delivered, the sync state, and the routes of other nodes' prefixes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    event: str
    subject: str
    payload: dict[str, Any]
    created_at: datetime


async def pending_outbox(conn: AsyncConnection, limit: int) -> list[OutboxEvent]:
    """The oldest events neither delivered nor parked, in sequence order."""
    o = t.outbox.c
    rows = await conn.execute(
        select(o.seq, o.event, o.subject, o.payload, o.created_at)
        .where(o.delivered_at.is_(None), o.parked.is_(False))
        .order_by(o.seq)
        .limit(limit)
    )
    return [
        OutboxEvent(r.seq, r.event, r.subject, json.loads(r.payload), r.created_at) for r in rows
    ]


async def mark_delivered(conn: AsyncConnection, seqs: Sequence[int], at: datetime) -> None:
    if seqs:
        await conn.execute(
            update(t.outbox)
            .where(t.outbox.c.seq.in_(seqs), t.outbox.c.delivered_at.is_(None))
            .values(delivered_at=at, attempts=t.outbox.c.attempts + 1, last_error=None)
        )


async def park(conn: AsyncConnection, seq: int, error: str) -> None:
    await conn.execute(
        update(t.outbox)
        .where(t.outbox.c.seq == seq)
        .values(parked=True, attempts=t.outbox.c.attempts + 1, last_error=error[:2000])
    )


async def unpark(conn: AsyncConnection) -> int:
    result = await conn.execute(
        update(t.outbox)
        .where(t.outbox.c.parked.is_(True), t.outbox.c.delivered_at.is_(None))
        .values(parked=False)
    )
    return int(result.rowcount or 0)


async def note_failure(conn: AsyncConnection, seqs: Sequence[int], error: str) -> None:
    if seqs:
        await conn.execute(
            update(t.outbox)
            .where(t.outbox.c.seq.in_(seqs))
            .values(attempts=t.outbox.c.attempts + 1, last_error=error[:2000])
        )


@dataclass(frozen=True)
class OutboxCounts:
    pending: int
    parked: int
    delivered: int
    oldest_pending: datetime | None


async def outbox_counts(conn: AsyncConnection) -> OutboxCounts:
    o = t.outbox.c
    pending = (o.delivered_at.is_(None)) & (o.parked.is_(False))
    row = (
        await conn.execute(
            select(
                func.count().filter(pending),
                func.count().filter(o.parked.is_(True) & o.delivered_at.is_(None)),
                func.count().filter(o.delivered_at.is_not(None)),
                func.min(o.created_at).filter(pending),
            )
        )
    ).one()
    # min() keeps the column's type, so the oldest time comes back as UTCDateTime.
    return OutboxCounts(int(row[0]), int(row[1]), int(row[2]), row[3])


async def sync_state(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.execute(select(t.sync_state.c.key, t.sync_state.c.value))
    return {row.key: row.value for row in rows}


async def set_sync_state(conn: AsyncConnection, **values: str) -> None:
    for key, value in values.items():
        updated = await conn.execute(
            update(t.sync_state).where(t.sync_state.c.key == key).values(value=value)
        )
        if not updated.rowcount:
            await conn.execute(insert(t.sync_state).values(key=key, value=value))


async def put_foreign_route(
    conn: AsyncConnection, prefix: str, node: str, site: bytes, *, hosted: bool, seq: int,
    deleted: bool,
) -> None:  # fmt: skip
    key = prefix.upper()
    await conn.execute(delete(t.foreign_routes).where(t.foreign_routes.c.prefix_key == key))
    if not deleted:
        await conn.execute(
            insert(t.foreign_routes).values(
                prefix_key=key, prefix=prefix, node=node, site=site, hosted=hosted, route_seq=seq
            )
        )


@dataclass(frozen=True)
class ForeignRoute:
    """Another node's prefix, and the ``HS_SITE`` that serves it."""

    prefix: str
    node: str
    site: bytes
    hosted: bool


async def foreign_routes(conn: AsyncConnection) -> list[ForeignRoute]:
    f = t.foreign_routes.c
    rows = await conn.execute(select(f.prefix, f.node, f.site, f.hosted).order_by(f.prefix_key))
    return [ForeignRoute(r.prefix, r.node, r.site, r.hosted) for r in rows]


async def get_foreign_route(conn: AsyncConnection, key: str) -> ForeignRoute | None:
    f = t.foreign_routes.c
    row = (
        await conn.execute(select(f.prefix, f.node, f.site, f.hosted).where(f.prefix_key == key))
    ).first()
    return None if row is None else ForeignRoute(row.prefix, row.node, row.site, row.hosted)
