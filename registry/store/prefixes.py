"""Enterprise prefixes: allocation, state, routes, paging and counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..models import Prefix, PrefixState, ProxyState, SiteRoute
from .rows import count_rows, created_within, insert_returning_id, page_rows, record_of, utcnow


def _prefix(row: Row[Any]) -> Prefix:
    route = None
    if row.site_ip is not None:
        route = SiteRoute(
            ip_type=row.site_ip_type,
            ip=row.site_ip,
            tcp_port=row.site_tcp_port,
            udp_port=row.site_udp_port,
            http_port=row.site_http_port,
        )
    return record_of(
        Prefix,
        row,
        state=PrefixState(row.state),
        proxy_state=ProxyState(row.proxy_state),
        route=route,
    )


async def insert_prefix(
    conn: AsyncConnection,
    *,
    prefix: str,
    key: str,
    enterprise_id: int,
    state: PrefixState,
    proxy_state: ProxyState,
) -> int:
    now = utcnow()
    return await insert_returning_id(
        conn,
        t.prefixes,
        prefix=prefix,
        prefix_key=key,
        enterprise_id=enterprise_id,
        state=int(state),
        proxy_state=int(proxy_state),
        created_at=now,
        updated_at=now,
    )


async def get_prefix(conn: AsyncConnection, key: str) -> Prefix | None:
    row = (await conn.execute(select(t.prefixes).where(t.prefixes.c.prefix_key == key))).first()
    return _prefix(row) if row else None


async def get_prefix_by_id(conn: AsyncConnection, prefix_id: int) -> Prefix | None:
    row = (await conn.execute(select(t.prefixes).where(t.prefixes.c.id == prefix_id))).first()
    return _prefix(row) if row else None


async def prefixes_of_enterprise(conn: AsyncConnection, enterprise_id: int) -> list[Prefix]:
    rows = await conn.execute(
        select(t.prefixes)
        .where(t.prefixes.c.enterprise_id == enterprise_id)
        .order_by(t.prefixes.c.id)
    )
    return [_prefix(row) for row in rows]


async def all_prefixes(conn: AsyncConnection) -> list[Prefix]:
    return [_prefix(row) for row in await conn.execute(select(t.prefixes))]


async def hosted_prefixes(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(
        select(t.prefixes.c.prefix)
        .where(t.prefixes.c.proxy_state == int(ProxyState.HOSTED))
        .order_by(t.prefixes.c.id)
    )
    return list(rows.scalars())


async def all_prefix_keys(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(select(t.prefixes.c.prefix_key))).scalars())


async def page_prefixes(
    conn: AsyncConnection,
    *,
    ent_name_like: str | None,
    prefix_like: str | None,
    start: datetime | None,
    end: datetime | None,
    enterprise_id: int | None,
    offset: int,
    limit: int,
) -> tuple[list[tuple[Prefix, str]], int]:
    joined = t.prefixes.join(t.enterprises, t.prefixes.c.enterprise_id == t.enterprises.c.id)
    conditions = created_within(t.prefixes.c.created_at, start, end)
    if ent_name_like:
        conditions.append(t.enterprises.c.org_name.contains(ent_name_like, autoescape=True))
    if prefix_like:
        conditions.append(t.prefixes.c.prefix.contains(prefix_like, autoescape=True))
    if enterprise_id is not None:
        conditions.append(t.prefixes.c.enterprise_id == enterprise_id)
    rows, total = await page_rows(
        conn,
        joined,
        [t.prefixes, t.enterprises.c.org_name],
        conditions,
        order_by=t.prefixes.c.id,
        offset=offset,
        limit=limit,
    )
    return [(_prefix(row), row.org_name) for row in rows], total


async def update_prefix(conn: AsyncConnection, prefix_id: int, **values: Any) -> None:
    await conn.execute(
        update(t.prefixes).where(t.prefixes.c.id == prefix_id).values(updated_at=utcnow(), **values)
    )


async def max_child_segment(conn: AsyncConnection, parent_key: str) -> int:
    """Highest numeric last segment among enterprise prefixes directly under ``parent``."""
    rows = await conn.execute(
        select(t.prefixes.c.prefix_key).where(t.prefixes.c.prefix_key.startswith(parent_key + "."))
    )
    highest = 0
    for key in rows.scalars():
        rest = key[len(parent_key) + 1 :]
        if rest.isascii() and rest.isdigit():
            highest = max(highest, int(rest))
    return highest


async def count_prefixes(conn: AsyncConnection) -> int:
    """Enterprise prefixes the node has allocated."""
    return await count_rows(conn, t.prefixes)
