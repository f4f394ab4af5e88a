"""Enterprises: filed, looked up by id or credit code, paged and counted."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..audit import canonical_json
from ..models import Enterprise, EnterpriseStatus
from .rows import count_rows, created_within, insert_returning_id, page_rows, record_of, utcnow


def _enterprise(row: Row[Any]) -> Enterprise:
    return record_of(
        Enterprise, row, status=EnterpriseStatus(row.status), filing=json.loads(row.filing)
    )


async def insert_enterprise(conn: AsyncConnection, values: dict[str, Any]) -> int:
    now = utcnow()
    values = {**values, "created_at": now, "updated_at": now}
    values["filing"] = canonical_json(values.get("filing", {}))
    return await insert_returning_id(conn, t.enterprises, **values)


async def get_enterprise(conn: AsyncConnection, enterprise_id: int) -> Enterprise | None:
    row = (
        await conn.execute(select(t.enterprises).where(t.enterprises.c.id == enterprise_id))
    ).first()
    return _enterprise(row) if row else None


async def find_enterprise_by_credit_code(
    conn: AsyncConnection, crt_type: int, code: str
) -> Enterprise | None:
    row = (
        await conn.execute(
            select(t.enterprises).where(
                t.enterprises.c.org_crt_type == crt_type, t.enterprises.c.org_crt_code == code
            )
        )
    ).first()
    return _enterprise(row) if row else None


async def page_enterprises(
    conn: AsyncConnection,
    *,
    name_like: str | None,
    start: datetime | None,
    end: datetime | None,
    only_id: int | None,
    offset: int,
    limit: int,
) -> tuple[list[Enterprise], int]:
    conditions = created_within(t.enterprises.c.created_at, start, end)
    if name_like:
        conditions.append(t.enterprises.c.org_name.contains(name_like, autoescape=True))
    if only_id is not None:
        conditions.append(t.enterprises.c.id == only_id)
    rows, total = await page_rows(
        conn,
        t.enterprises,
        [t.enterprises],
        conditions,
        order_by=t.enterprises.c.id,
        offset=offset,
        limit=limit,
    )
    return [_enterprise(row) for row in rows], total


async def count_enterprises(conn: AsyncConnection, status: EnterpriseStatus | None = None) -> int:
    where = [] if status is None else [t.enterprises.c.status == int(status)]
    return await count_rows(conn, t.enterprises, *where)


async def all_enterprises(conn: AsyncConnection) -> list[Enterprise]:
    return [_enterprise(row) for row in await conn.execute(select(t.enterprises))]
