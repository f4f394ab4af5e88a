"""What every table module uses: the time rows are stamped with, records made
from rows, one row inserted for its id, counts and pages, and many rows written
at once."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, FromClause, Table, func, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def utcnow() -> datetime:
    return datetime.now(UTC)


def record_of(cls: type[R], row: Row[Any], **converted: Any) -> R:
    """The domain record ``cls`` (a dataclass) from a row whose columns bear its
    fields' names; ``converted`` gives the fields whose value is not the column's
    as stored (an enum, parsed JSON, a related record)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in dataclasses.fields(cls))
    columns = row._mapping
    stored = {name: columns[name] for name in names if name not in converted}
    return cls(**stored, **converted)


_FIELD_NAMES: dict[type[DataclassInstance], tuple[str, ...]] = {}
"""The field names of each record type ``record_of`` has made."""


async def insert_returning_id(conn: AsyncConnection, table: Table, **values: Any) -> int:
    """Insert one row into ``table``; the ``id`` it was given."""
    result = await conn.execute(insert(table).values(**values).returning(table.c.id))
    return int(result.scalar_one())


async def count_rows(conn: AsyncConnection, source: FromClause, *where: ColumnElement[bool]) -> int:
    """How many rows of ``source`` (a table or a join) meet every condition."""
    query = select(func.count()).select_from(source).where(*where)
    return int((await conn.execute(query)).scalar_one())


async def page_rows(
    conn: AsyncConnection,
    source: FromClause,
    columns: Sequence[Any],
    where: Sequence[ColumnElement[bool]],
    *,
    order_by: Any,
    offset: int,
    limit: int,
) -> tuple[Sequence[Row[Any]], int]:
    """One page of ``columns`` from the rows of ``source`` that meet every condition
    of ``where``, in ``order_by`` order, and how many rows meet them in all."""
    total = await count_rows(conn, source, *where)
    query = (
        select(*columns)
        .select_from(source)
        .where(*where)
        .order_by(order_by)
        .offset(offset)
        .limit(limit)
    )
    return (await conn.execute(query)).all(), total


def created_within(
    column: Any, start: datetime | None, end: datetime | None
) -> list[ColumnElement[bool]]:
    """The conditions of a page's date filter: ``column`` from ``start`` to ``end``,
    each bound only when given."""
    conditions: list[ColumnElement[bool]] = []
    if start:
        conditions.append(column >= start)
    if end:
        conditions.append(column <= end)
    return conditions


COPY_ROWS = 64
"""From this many rows, PostgreSQL gets them by COPY: several times faster than
INSERT for a batch registration (no statement to bind per row)."""


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Rows into ``table``: one INSERT, or COPY on PostgreSQL for many. Every row
    has the same keys, values as the columns take them (aware datetimes)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql" or len(rows) < COPY_ROWS:
        await conn.execute(insert(table), list(rows))
        return
    import asyncpg  # the PostgreSQL driver, only where it is in use

    columns = list(rows[0])
    pick = operator.itemgetter(*columns)
    records = (
        [pick(row) for row in rows] if len(columns) > 1 else [(row[columns[0]],) for row in rows]
    )
    raw: Any = (await conn.get_raw_connection()).driver_connection
    try:
        await raw.copy_records_to_table(table.name, records=records, columns=columns)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(f"COPY {table.name}", None, exc) from exc
    except (asyncpg.DataError, asyncpg.exceptions.DataError) as exc:
        raise DataError(f"COPY {table.name}", None, exc) from exc
