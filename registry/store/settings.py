"""The node's own settings, and the prefixes the node itself holds
(its node prefix, as opposed to the enterprise prefixes it allocates)."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from .rows import utcnow


async def read_settings(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.execute(select(t.node_settings.c.key, t.node_settings.c.value))
    return {row.key: row.value for row in rows}


async def insert_setting(conn: AsyncConnection, key: str, value: str) -> None:
    await conn.execute(insert(t.node_settings).values(key=key, value=value))


async def node_prefix_keys(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(select(t.node_prefixes.c.prefix_key))).scalars())


async def insert_node_prefix(
    conn: AsyncConnection, prefix: str, key: str, description: str
) -> None:
    await conn.execute(
        insert(t.node_prefixes).values(
            prefix=prefix, prefix_key=key, description=description, created_at=utcnow()
        )
    )
