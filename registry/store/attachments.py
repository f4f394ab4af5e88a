"""Attachments: uploaded files (filing documents), stored in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from .rows import insert_returning_id, utcnow


@dataclass(frozen=True, slots=True)
class Attachment:
    id: int
    path: str
    owner_id: int
    enterprise_id: int | None
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime


async def insert_attachment(
    conn: AsyncConnection,
    *,
    path: str,
    owner_id: int,
    filename: str,
    content_type: str,
    data: bytes,
    sha256: str,
) -> int:
    return await insert_returning_id(
        conn,
        t.attachments,
        path=path,
        owner_id=owner_id,
        filename=filename,
        content_type=content_type,
        size=len(data),
        sha256=sha256,
        data=data,
        created_at=utcnow(),
    )


_ATTACHMENT_FIELDS = [c for c in t.attachments.c if c.name != "data"]


async def get_attachment(conn: AsyncConnection, attachment_id: int) -> Attachment | None:
    row = (
        await conn.execute(select(*_ATTACHMENT_FIELDS).where(t.attachments.c.id == attachment_id))
    ).first()
    return Attachment(**row._mapping) if row else None


async def attachment_data(conn: AsyncConnection, attachment_id: int) -> bytes:
    query = select(t.attachments.c.data).where(t.attachments.c.id == attachment_id)
    return bytes((await conn.execute(query)).scalar_one())


async def link_attachment(conn: AsyncConnection, attachment_id: int, enterprise_id: int) -> None:
    await conn.execute(
        update(t.attachments)
        .where(t.attachments.c.id == attachment_id)
        .values(enterprise_id=enterprise_id)
    )
