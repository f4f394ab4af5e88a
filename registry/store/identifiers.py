"""Identifiers and their values: the resolution hot path's reads, batch
registration, listing by prefix and by DNS name, counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..models import HandleValue, Identifier
from .rows import COPY_ROWS, count_rows, insert_rows, page_rows, utcnow
from .search import search_text


def _value_row(identifier_id: int, value: HandleValue) -> dict[str, Any]:
    return {
        "identifier_id": identifier_id,
        "idx": value.index,
        "type": value.type,
        "data": value.data,
        "ttl_type": value.ttl_type,
        "ttl": value.ttl,
        "timestamp": value.timestamp,
        "permissions": value.permissions,
        "refs": json.dumps([list(ref) for ref in value.references]) if value.references else "[]",
        "search_text": search_text(value.data),
    }


_VALUE_COLUMNS = (
    t.identifier_values.c.idx,
    t.identifier_values.c.type,
    t.identifier_values.c.data,
    t.identifier_values.c.ttl_type,
    t.identifier_values.c.ttl,
    t.identifier_values.c.timestamp,
    t.identifier_values.c.permissions,
    t.identifier_values.c.refs,
)


_IDENTIFIER_WITH_VALUES = (
    select(
        t.identifiers.c.id,
        t.identifiers.c.name,
        t.identifiers.c.name_key,
        t.identifiers.c.prefix_id,
        t.identifiers.c.template_id,
        t.identifiers.c.revision,
        t.identifiers.c.created_at,
        t.identifiers.c.updated_at,
        *_VALUE_COLUMNS,
    )
    .select_from(
        t.identifiers.outerjoin(
            t.identifier_values, t.identifier_values.c.identifier_id == t.identifiers.c.id
        )
    )
    .order_by(t.identifier_values.c.idx)
)


_FIRST_VALUE_COLUMN = 8


async def get_identifier(conn: AsyncConnection, name_key: str) -> Identifier | None:
    """One record with its values, in a single round trip (the resolution hot path)."""
    rows = (
        await conn.execute(_IDENTIFIER_WITH_VALUES.where(t.identifiers.c.name_key == name_key))
    ).all()
    return _identifier_of(rows) if rows else None


LOOKUP_CHUNK = 500
"""Names per ``IN (...)`` list: well within every database's limit of bound parameters."""


async def get_identifiers(conn: AsyncConnection, name_keys: Sequence[str]) -> dict[str, Identifier]:
    """The records of these names that exist, by name key, a few round trips in all."""
    found: dict[str, Identifier] = {}
    for start in range(0, len(name_keys), LOOKUP_CHUNK):
        chunk = name_keys[start : start + LOOKUP_CHUNK]
        query = _IDENTIFIER_WITH_VALUES.where(t.identifiers.c.name_key.in_(chunk))
        by_id: dict[int, list[Any]] = {}
        for row in (await conn.execute(query)).all():
            by_id.setdefault(row[0], []).append(row)
        for rows in by_id.values():
            identifier = _identifier_of(rows)
            found[identifier.name_key] = identifier
    return found


def _identifier_of(rows: Sequence[Any]) -> Identifier:
    """A record from its rows of ``_IDENTIFIER_WITH_VALUES`` (one per value)."""
    head = rows[0]
    return Identifier(
        id=head[0],
        name=head[1],
        name_key=head[2],
        prefix_id=head[3],
        template_id=head[4],
        revision=head[5],
        created_at=head[6],
        updated_at=head[7],
        values=tuple(
            _value_of(row[_FIRST_VALUE_COLUMN:])
            for row in rows
            if row[_FIRST_VALUE_COLUMN] is not None
        ),
    )


def _value_of(row: Sequence[Any]) -> HandleValue:
    """A value from its columns, in the order of ``_VALUE_COLUMNS``."""
    index, vtype, data, ttl_type, ttl, timestamp, permissions, refs = row
    return HandleValue(
        index=index,
        type=vtype,
        data=bytes(data),
        ttl_type=ttl_type,
        ttl=ttl,
        timestamp=timestamp,
        permissions=permissions,
        references=() if refs == "[]" else tuple((str(h), int(i)) for h, i in json.loads(refs)),
    )


async def names_at_dns_path(conn: AsyncConnection, path: str) -> list[str]:
    """The identifiers whose DNS name has this path (two only if a digest collides)."""
    rows = await conn.execute(
        select(t.identifiers.c.name).where(t.identifiers.c.dns_path == path).limit(2)
    )
    return [row.name for row in rows]


async def any_dns_path_below(conn: AsyncConnection, path: str) -> bool:
    """Whether some identifier's DNS name lies below the name with this path: a
    range scan of the index (paths sort bytewise; "/" is the character after ".")."""
    column = t.identifiers.c.dns_path
    row = await conn.execute(
        select(t.identifiers.c.id).where(column > path + ".", column < path + "/").limit(1)
    )
    return row.first() is not None


@dataclass(frozen=True, slots=True)
class NewIdentifier:
    name: str
    name_key: str
    prefix_id: int | None
    template_id: int | None
    values: Sequence[HandleValue]
    dns_path: str | None = None


async def insert_identifiers(conn: AsyncConnection, new: Sequence[NewIdentifier]) -> list[int]:
    """Identifiers with their values, in two statements whatever their number
    (a batch registration); returns their ids, in order."""
    if not new:
        return []
    now = utcnow()
    rows = [
        {
            "name": item.name,
            "name_key": item.name_key,
            "dns_path": item.dns_path,
            "prefix_id": item.prefix_id,
            "template_id": item.template_id,
            "revision": 1,
            "created_at": now,
            "updated_at": now,
        }
        for item in new
    ]
    if conn.dialect.name == "postgresql" and len(new) >= COPY_ROWS:
        # Ids drawn first, so the rows (and their values) can go by COPY.
        ids = list(
            (
                await conn.execute(
                    sql(
                        "SELECT nextval(pg_get_serial_sequence('identifiers', 'id')) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"n": len(new)},
                )
            ).scalars()
        )
        await insert_rows(
            conn, t.identifiers, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)]
        )
    else:
        result = await conn.execute(
            insert(t.identifiers).returning(t.identifiers.c.id, sort_by_parameter_order=True),
            rows,
        )
        ids = [int(row[0]) for row in result]
    values = [_value_row(i, v) for i, item in zip(ids, new, strict=True) for v in item.values]
    await insert_rows(conn, t.identifier_values, values)
    return ids


async def insert_identifier(
    conn: AsyncConnection,
    *,
    name: str,
    name_key: str,
    prefix_id: int | None,
    template_id: int | None,
    values: Sequence[HandleValue],
    dns_path: str | None = None,
) -> int:
    new = NewIdentifier(name, name_key, prefix_id, template_id, values, dns_path)
    return (await insert_identifiers(conn, [new]))[0]


async def replace_identifier_values(
    conn: AsyncConnection,
    identifier: Identifier,
    *,
    template_id: int | None,
    values: Sequence[HandleValue],
) -> None:
    await conn.execute(
        delete(t.identifier_values).where(t.identifier_values.c.identifier_id == identifier.id)
    )
    if values:
        await conn.execute(
            insert(t.identifier_values), [_value_row(identifier.id, v) for v in values]
        )
    await conn.execute(
        update(t.identifiers)
        .where(t.identifiers.c.id == identifier.id)
        .values(template_id=template_id, revision=identifier.revision + 1, updated_at=utcnow())
    )


async def replace_values_of_many(
    conn: AsyncConnection, changes: Sequence[tuple[Identifier, Sequence[HandleValue]]]
) -> None:
    """:func:`replace_identifier_values` for many records in three statements (their
    templates kept): what signing a batch of records writes."""
    if not changes:
        return
    ids = [identifier.id for identifier, _ in changes]
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        await conn.execute(
            delete(t.identifier_values).where(t.identifier_values.c.identifier_id.in_(chunk))
        )
    rows = [_value_row(identifier.id, v) for identifier, values in changes for v in values]
    if rows:
        await conn.execute(insert(t.identifier_values), rows)
    await conn.execute(
        update(t.identifiers)
        .where(t.identifiers.c.id == bindparam("identifier_id"))
        .values(revision=bindparam("next_revision"), updated_at=bindparam("now")),
        [
            {"identifier_id": i.id, "next_revision": i.revision + 1, "now": utcnow()}
            for i, _ in changes
        ],
    )


async def identifier_names(
    conn: AsyncConnection, prefix_id: int, *, offset: int, limit: int
) -> list[str]:
    rows = await conn.execute(
        select(t.identifiers.c.name)
        .where(t.identifiers.c.prefix_id == prefix_id)
        .order_by(t.identifiers.c.name_key)
        .offset(offset)
        .limit(limit)
    )
    return list(rows.scalars())


async def node_level_names(
    conn: AsyncConnection, node_prefix_key: str, *, offset: int, limit: int
) -> tuple[int, list[str]]:
    """Records directly under the node prefix (``88.100/x``), which no enterprise owns."""
    where = [
        t.identifiers.c.prefix_id.is_(None),
        t.identifiers.c.name_key.startswith(node_prefix_key + "/", autoescape=True),
    ]
    rows, total = await page_rows(
        conn,
        t.identifiers,
        [t.identifiers.c.name],
        where,
        order_by=t.identifiers.c.name_key,
        offset=offset,
        limit=limit,
    )
    return total, [row.name for row in rows]


async def all_identifier_names(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(select(t.identifiers.c.name))
    return [row.name for row in rows]


async def delete_identifier(conn: AsyncConnection, identifier_id: int) -> None:
    # Values go explicitly: SQLite enforces ON DELETE CASCADE only with the
    # foreign_keys pragma, and a store must not depend on a pragma for this.
    await conn.execute(
        delete(t.identifier_values).where(t.identifier_values.c.identifier_id == identifier_id)
    )
    await conn.execute(delete(t.identifiers).where(t.identifiers.c.id == identifier_id))


async def count_identifiers(conn: AsyncConnection, prefix_id: int | None = None) -> int:
    """Identifiers under one enterprise prefix, or under all of them.

    Records the node keeps for itself (prefix handles, identities) do not count.
    """
    column = t.identifiers.c.prefix_id
    where = column.is_not(None) if prefix_id is None else column == prefix_id
    return await count_rows(conn, t.identifiers, where)


async def count_enterprise_identifiers(conn: AsyncConnection, enterprise_id: int) -> int:
    """Identifiers under all the prefixes of one enterprise."""
    joined = t.identifiers.join(t.prefixes, t.identifiers.c.prefix_id == t.prefixes.c.id)
    return await count_rows(conn, joined, t.prefixes.c.enterprise_id == enterprise_id)
