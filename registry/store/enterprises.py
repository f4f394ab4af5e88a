"""Enterprises: filed, looked up by id or credit code, paged and counted."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..audit import canonical_json
from ..models import Enterprise, EnterpriseStatus
from .rows import utcnow


def _enterprise(row: Row[Any]) -> Enterprise:
    return Enterprise(
        id=row.id,
        org_name=row.org_name,
        org_nature=row.org_nature,
        org_crt_type=row.org_crt_type,
        org_crt_code=row.org_crt_code,
        org_desc=row.org_desc,
        org_addr=row.org_addr,
        industry_category=row.industry_category,
        industry_specific=row.industry_specific,
        website=row.website,
        contact_name=row.contact_name,
        contact_phone=row.contact_phone,
        contact_email=row.contact_email,
        status=EnterpriseStatus(row.status),
        filing=json.loads(row.filing),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def insert_enterprise(conn: AsyncConnection, values: dict[str, Any]) -> int:
    now = utcnow()
    values = {**values, "created_at": now, "updated_at": now}
    values["filing"] = canonical_json(values.get("filing", {}))
    result = await conn.execute(
        insert(t.enterprises).values(**values).returning(t.enterprises.c.id)
    )
    return int(result.scalar_one())


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
    conditions: list[ColumnElement[bool]] = []
    if name_like:
        conditions.append(t.enterprises.c.org_name.contains(name_like, autoescape=True))
    if start:
        conditions.append(t.enterprises.c.created_at >= start)
    if end:
        conditions.append(t.enterprises.c.created_at <= end)
    if only_id is not None:
        conditions.append(t.enterprises.c.id == only_id)
    where = and_(*conditions) if conditions else None
    count_q = select(func.count()).select_from(t.enterprises)
    page_q = select(t.enterprises).order_by(t.enterprises.c.id).offset(offset).limit(limit)
    if where is not None:
        count_q, page_q = count_q.where(where), page_q.where(where)
    total = int((await conn.execute(count_q)).scalar_one())
    return [_enterprise(row) for row in await conn.execute(page_q)], total


async def count_enterprises(conn: AsyncConnection, status: EnterpriseStatus | None = None) -> int:
    query = select(func.count()).select_from(t.enterprises)
    if status is not None:
        query = query.where(t.enterprises.c.status == int(status))
    return int((await conn.execute(query)).scalar_one())


async def all_enterprises(conn: AsyncConnection) -> list[Enterprise]:
    return [_enterprise(row) for row in await conn.execute(select(t.enterprises))]
