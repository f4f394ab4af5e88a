"""The journal of changes: the sequence head every write transaction locks
first, the hash-chained audit log, and the outbox read as the change feed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..audit import canonical_json, entry_hash
from ..models import AuditEntry
from .rows import insert_rows, record_of


@dataclass(slots=True)
class Head:
    audit_seq: int
    audit_hash: str
    outbox_seq: int


async def lock_head(conn: AsyncConnection) -> Head:
    """Lock the sequence head for the rest of the transaction.

    Every write transaction calls this first, so writers queue here instead
    of deadlocking on each other's rows, and sequence numbers are handed out
    in commit order (SQLite already holds its write lock: ``BEGIN IMMEDIATE``).
    """
    query = select(t.registry_head).where(t.registry_head.c.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).one()
    return Head(row.audit_seq, row.audit_hash, row.outbox_seq)


async def save_head(conn: AsyncConnection, head: Head) -> None:
    await conn.execute(
        update(t.registry_head)
        .where(t.registry_head.c.id == 1)
        .values(audit_seq=head.audit_seq, audit_hash=head.audit_hash, outbox_seq=head.outbox_seq)
    )


async def read_head(conn: AsyncConnection) -> Head:
    row = (await conn.execute(select(t.registry_head).where(t.registry_head.c.id == 1))).one()
    return Head(row.audit_seq, row.audit_hash, row.outbox_seq)


@dataclass(frozen=True, slots=True)
class Entry:
    """One registry change as it is audited and sent upward."""

    action: str
    target: str
    payload: dict[str, Any]
    """What the outbox event carries."""
    detail: dict[str, Any]
    """What the audit entry records."""


async def append_entries(
    conn: AsyncConnection,
    head: Head,
    entries: Sequence[Entry],
    *,
    actor: str,
    remote: str,
    at: datetime,
    audit: bool = True,
    outbox: bool = True,
) -> list[int]:
    """Audit entries (hash-chained from ``head``) and outbox events for several
    changes, in two statements; returns the events' outbox sequence numbers."""
    audit_rows, outbox_rows, seqs = [], [], []
    for entry in entries:
        if audit:
            seq = head.audit_seq + 1
            detail_text = canonical_json(entry.detail)
            digest = entry_hash(
                seq=seq,
                at=at,
                actor=actor,
                action=entry.action,
                target=entry.target,
                detail=json.loads(detail_text),  # exactly what will be read back
                remote=remote,
                prev_hash=head.audit_hash,
            )
            audit_rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "actor": actor,
                    "action": entry.action,
                    "target": entry.target,
                    "detail": detail_text,
                    "remote": remote,
                    "prev_hash": head.audit_hash,
                    "hash": digest,
                }
            )
            head.audit_seq, head.audit_hash = seq, digest
        if not outbox:
            continue
        head.outbox_seq += 1
        seqs.append(head.outbox_seq)
        outbox_rows.append(
            {
                "seq": head.outbox_seq,
                "created_at": at,
                "event": entry.action,
                "subject": entry.target,
                "payload": canonical_json(entry.payload),
                "attempts": 0,
                "parked": False,
            }
        )
    await insert_rows(conn, t.audit_log, audit_rows)
    await insert_rows(conn, t.outbox, outbox_rows)
    return seqs


CHANGE_CHANNEL = "idnode_changes"
"""PostgreSQL NOTIFY channel: a committed change's outbox sequence number."""


async def notify_changes(conn: AsyncConnection, seq: int) -> None:
    """Wake other processes' change feeds (PostgreSQL delivers it at commit)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(CHANGE_CHANNEL, str(seq))))


async def read_changes(
    conn: AsyncConnection, after: int, limit: int = 1000
) -> list[tuple[int, str, str]]:
    """``(seq, event, subject)`` of outbox events after ``after``: the change feed."""
    rows = await conn.execute(
        select(t.outbox.c.seq, t.outbox.c.event, t.outbox.c.subject)
        .where(t.outbox.c.seq > after)
        .order_by(t.outbox.c.seq)
        .limit(limit)
    )
    return [(row.seq, row.event, row.subject) for row in rows]


async def last_change(conn: AsyncConnection) -> int:
    return int(
        (await conn.execute(select(func.coalesce(func.max(t.outbox.c.seq), 0)))).scalar_one()
    )


async def read_audit(
    conn: AsyncConnection, *, after: int = 0, up_to: int | None = None, limit: int | None = None
) -> list[AuditEntry]:
    query = select(t.audit_log).where(t.audit_log.c.seq > after).order_by(t.audit_log.c.seq)
    if up_to is not None:
        query = query.where(t.audit_log.c.seq <= up_to)
    if limit is not None:
        query = query.limit(limit)
    return [
        record_of(AuditEntry, row, detail=json.loads(row.detail))
        for row in await conn.execute(query)
    ]


async def outbox_events(
    conn: AsyncConnection, *, after: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(t.outbox).where(t.outbox.c.seq > after).order_by(t.outbox.c.seq).limit(limit)
    )
    return [
        {
            "seq": row.seq,
            "event": row.event,
            "subject": row.subject,
            "payload": json.loads(row.payload),
            "created_at": row.created_at,
            "delivered_at": row.delivered_at,
        }
        for row in rows
    ]
