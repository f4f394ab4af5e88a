"""Data grants (数据权限): what one enterprise may read of another's records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..models import DataGrant
from .rows import insert_returning_id, record_of, utcnow

_GRANT_COLUMNS = (
    t.data_grants.c.id,
    t.data_grants.c.prefix_id,
    t.prefixes.c.prefix,
    t.prefixes.c.enterprise_id.label("owner_enterprise_id"),
    t.data_grants.c.grantee_enterprise_id,
    t.enterprises.c.org_name.label("grantee_name"),
    t.data_grants.c.template_version,
    t.data_grants.c.item_types,
    t.data_grants.c.created_at,
    t.data_grants.c.updated_at,
)


def _grants_query(where: ColumnElement[bool]) -> Any:
    g = t.data_grants
    return (
        select(*_GRANT_COLUMNS)
        .select_from(
            g.join(t.prefixes, t.prefixes.c.id == g.c.prefix_id).join(
                t.enterprises, t.enterprises.c.id == g.c.grantee_enterprise_id
            )
        )
        .where(where)
        .order_by(t.prefixes.c.prefix_key, g.c.grantee_enterprise_id, g.c.template_version)
    )


def _grant(row: Row[Any]) -> DataGrant:
    return record_of(DataGrant, row, items=tuple(json.loads(row.item_types)))


async def _grants(conn: AsyncConnection, where: ColumnElement[bool]) -> list[DataGrant]:
    return [_grant(row) for row in await conn.execute(_grants_query(where))]


async def insert_grant(
    conn: AsyncConnection,
    *,
    prefix_id: int,
    grantee_enterprise_id: int,
    template_version: str,
    items: Sequence[str],
) -> int:
    now = utcnow()
    return await insert_returning_id(
        conn,
        t.data_grants,
        prefix_id=prefix_id,
        grantee_enterprise_id=grantee_enterprise_id,
        template_version=template_version,
        item_types=json.dumps(list(items), ensure_ascii=False),
        created_at=now,
        updated_at=now,
    )


async def update_grant_items(conn: AsyncConnection, grant_id: int, items: Sequence[str]) -> None:
    await conn.execute(
        update(t.data_grants)
        .where(t.data_grants.c.id == grant_id)
        .values(item_types=json.dumps(list(items), ensure_ascii=False), updated_at=utcnow())
    )


async def delete_grant(conn: AsyncConnection, grant_id: int) -> None:
    await conn.execute(delete(t.data_grants).where(t.data_grants.c.id == grant_id))


async def get_grant(conn: AsyncConnection, grant_id: int) -> DataGrant | None:
    found = await _grants(conn, t.data_grants.c.id == grant_id)
    return found[0] if found else None


async def find_grant(
    conn: AsyncConnection, prefix_id: int, grantee_enterprise_id: int, template_version: str
) -> DataGrant | None:
    g = t.data_grants.c
    found = await _grants(
        conn,
        and_(
            g.prefix_id == prefix_id,
            g.grantee_enterprise_id == grantee_enterprise_id,
            g.template_version == template_version,
        ),
    )
    return found[0] if found else None


async def grants(
    conn: AsyncConnection,
    *,
    prefix_ids: Sequence[int] | None = None,
    grantee_enterprise_id: int | None = None,
) -> list[DataGrant]:
    """Grants on these prefixes, or to this enterprise (either, when both are
    given); every grant when neither is."""
    g = t.data_grants.c
    clauses: list[ColumnElement[bool]] = []
    if prefix_ids is not None:
        clauses.append(g.prefix_id.in_(prefix_ids))
    if grantee_enterprise_id is not None:
        clauses.append(g.grantee_enterprise_id == grantee_enterprise_id)
    where = or_(*clauses) if clauses else g.id.isnot(None)
    return await _grants(conn, where)


async def grants_to(
    conn: AsyncConnection, grantee_enterprise_id: int, prefix_id: int | None = None
) -> list[DataGrant]:
    """What one enterprise was granted (on one prefix): the access decisions' query."""
    g = t.data_grants.c
    where = g.grantee_enterprise_id == grantee_enterprise_id
    if prefix_id is not None:
        where = and_(where, g.prefix_id == prefix_id)
    return await _grants(conn, where)
